"""Self-management courses and enrolments: what is stored, and the rules of their lives.

The completion rule
  Each course stores ``completion_min_sessions``: an enrolment completes when the person attended
  at least that many of the course's sessions. When a course is created without one it defaults
  from ``GROUPS_COMPLETION_MIN_SESSIONS`` (default 4), which is read as "N of 6 sessions" (the
  Expert Patients Programme's six weekly sessions) and scaled, rounding up, for a course of
  another length: 4 of 6 -> 6 of 8, 3 of 4, 2 of 3, 1 of 1.

When it is decided
  * As soon as attendance for the course's final session has been recorded (attended or not)
    and the person has attended at least ``completion_min_sessions``: ``completed``.
  * When the course is finished (``POST /v1/courses/{id}/finish``) every enrolment still open is
    settled: ``completed`` if the rule is met, ``not_completed`` otherwise (a person who stayed
    to the end but attended fewer sessions neither completed nor withdrew).
  * Cancelling a course withdraws every open enrolment, with the cancellation as the reason.
"""
from __future__ import annotations

import os
from datetime import date, datetime

from sqlalchemy import (JSON, Date, DateTime, ForeignKey, Index, Integer, MetaData, String, Text,
                        text)
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

from coproduction.idempotency import idempotency_table
from coproduction.outbox import outbox_table

Json = JSON().with_variant(JSONB(), "postgresql")

PROGRAMMES = ("expert_patients", "co_creating_health", "other")
TUTOR_ROLES = ("lay_tutor", "clinician")
COURSE_STATUSES = ("planned", "running", "finished", "cancelled")
REFERRAL_SOURCES = ("self", "gp", "care_plan", "hospital", "budget")
ENROLMENT_STATUSES = ("referred", "enrolled", "active", "completed", "not_completed", "withdrawn")
OPEN = ("referred", "enrolled", "active")
#: statuses that hold a place on the course (a withdrawal frees it)
HOLDS_A_PLACE = ("referred", "enrolled", "active", "completed", "not_completed")

BASE_SESSIONS = 6
DEFAULT_MIN_OF_SIX = 4
ENV_MIN = "GROUPS_COMPLETION_MIN_SESSIONS"


class Base(DeclarativeBase):
    metadata = MetaData()


outbox = outbox_table(Base.metadata)
idempotency_keys = idempotency_table(Base.metadata)

COURSE_TRANSITIONS = {
    "planned": {"start": "running", "cancel": "cancelled"},
    "running": {"finish": "finished", "cancel": "cancelled"},
    "finished": {},
    "cancelled": {},
}

ENROLMENT_TRANSITIONS = {
    "referred": {"confirm": "enrolled", "withdraw": "withdrawn"},
    "enrolled": {"attend": "active", "complete": "completed", "not_complete": "not_completed",
                 "withdraw": "withdrawn"},
    "active": {"complete": "completed", "not_complete": "not_completed", "withdraw": "withdrawn"},
    "completed": {},
    "not_completed": {},
    "withdrawn": {},
}

ACTION_NAMES = {"start": "started", "cancel": "cancelled", "finish": "finished", "confirm": "confirmed",
                "attend": "marked as attending", "complete": "completed",
                "not_complete": "marked not completed", "withdraw": "withdrawn"}


class IllegalTransition(Exception):
    pass


def _transition(kind: str, status: str, table: dict, action: str) -> str:
    allowed = table[status]
    if action not in allowed:
        names = ", ".join(ACTION_NAMES[a] for a in sorted(allowed))
        raise IllegalTransition(
            f"A {status.replace('_', ' ')} {kind} cannot be {ACTION_NAMES[action]}"
            + (f"; from {status} it can only be: {names}." if allowed else f"; {status} is final."))
    return allowed[action]


def min_of_six_from_env() -> int:
    """``GROUPS_COMPLETION_MIN_SESSIONS``: sessions of a six-session course needed to complete."""
    raw = os.environ.get(ENV_MIN, str(DEFAULT_MIN_OF_SIX))
    try:
        value = int(raw)
    except ValueError:
        raise ValueError(f"{ENV_MIN} must be a whole number of sessions (of 6), not {raw!r}") from None
    if not 1 <= value <= BASE_SESSIONS:
        raise ValueError(f"{ENV_MIN} must be between 1 and {BASE_SESSIONS} (sessions of a "
                         f"{BASE_SESSIONS}-session course), not {value}")
    return value


def default_min_sessions(sessions: int, min_of_six: int = DEFAULT_MIN_OF_SIX) -> int:
    """The default rule for a course of ``sessions``: ``min_of_six`` of 6, scaled, rounded up."""
    if sessions == BASE_SESSIONS:
        return min_of_six
    # integer arithmetic: ceil(min_of_six * sessions / 6) without float surprises
    return max(1, min(sessions, -(-min_of_six * sessions // BASE_SESSIONS)))


class Course(Base):
    __tablename__ = "courses"

    id: Mapped[str] = mapped_column(String(36), primary_key=True)
    programme: Mapped[str] = mapped_column(String(30), index=True)
    title: Mapped[str] = mapped_column(String(200))
    sessions: Mapped[int] = mapped_column(Integer)
    session_minutes: Mapped[int] = mapped_column(Integer)
    completion_min_sessions: Mapped[int] = mapped_column(Integer)
    capacity: Mapped[int] = mapped_column(Integer)
    starts_on: Mapped[date] = mapped_column(Date)
    venue: Mapped[str | None] = mapped_column(String(200))
    tutors: Mapped[list] = mapped_column(Json)
    status: Mapped[str] = mapped_column(String(20), index=True)
    status_reason: Mapped[str | None] = mapped_column(String(500))
    version: Mapped[int] = mapped_column(Integer)
    created_by: Mapped[str] = mapped_column(String(200))
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), index=True)
    updated_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))

    def transition(self, action: str) -> str:
        self.status = _transition("course", self.status, COURSE_TRANSITIONS, action)
        return self.status

    @property
    def rule(self) -> str:
        return f"attend at least {self.completion_min_sessions} of {self.sessions} sessions"


class Enrolment(Base):
    __tablename__ = "enrolments"
    __table_args__ = (
        # one live enrolment per person per course, even under a race (a withdrawal frees it)
        Index("uq_enrolments_live_person", "course_id", "nhs_number", unique=True,
              postgresql_where=text("status <> 'withdrawn'"), sqlite_where=text("status <> 'withdrawn'")),
    )

    id: Mapped[str] = mapped_column(String(36), primary_key=True)
    course_id: Mapped[str] = mapped_column(String(36), ForeignKey("courses.id"), index=True)
    nhs_number: Mapped[str] = mapped_column(String(10), index=True)
    status: Mapped[str] = mapped_column(String(20))
    referral_source: Mapped[str] = mapped_column(String(20))
    priorities: Mapped[list] = mapped_column(Json)
    attendance: Mapped[list] = mapped_column(Json)
    action_plans: Mapped[list] = mapped_column(Json)
    withdrawn_reason: Mapped[str | None] = mapped_column(Text)
    withdrawn_by: Mapped[str | None] = mapped_column(String(20))
    withdrawn_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    completed_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    version: Mapped[int] = mapped_column(Integer)
    created_by: Mapped[str] = mapped_column(String(200))
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), index=True)
    updated_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))

    def transition(self, action: str) -> str:
        self.status = _transition("enrolment", self.status, ENROLMENT_TRANSITIONS, action)
        return self.status

    @property
    def sessions_attended(self) -> int:
        return sum(1 for a in self.attendance if a["attended"])

    def rule_met(self, course: Course) -> bool:
        return self.sessions_attended >= course.completion_min_sessions

    def final_session_recorded(self, course: Course) -> bool:
        return any(a["session_no"] == course.sessions for a in self.attendance)


def remaining_possible(enrolment: Enrolment, course: Course) -> int:
    """Sessions not yet recorded as attended or missed: the most the person can still add."""
    recorded = {a["session_no"] for a in enrolment.attendance}
    return course.sessions - len(recorded)

