"""Self-management courses and enrolments: what is stored (the rules are in ``domain``)."""
from __future__ import annotations

from datetime import date, datetime

from sqlalchemy import Date, DateTime, ForeignKey, Index, Integer, MetaData, String, Text, text
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

from coproduction.aggregate import AggregateRow, Json, PersonRow, service_tables

from . import domain
from .domain import default_min_sessions, min_of_six_from_env  # noqa: F401  (app.py and the tests read them here)


class Base(DeclarativeBase):
    metadata = MetaData()


outbox, idempotency_keys = service_tables(Base.metadata)


class Course(AggregateRow, Base):
    __tablename__ = "courses"

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
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), index=True)

    @property
    def rule(self) -> str:
        return domain.completion_rule(self.completion_min_sessions, self.sessions)


class Enrolment(PersonRow, Base):
    __tablename__ = "enrolments"
    __table_args__ = (
        # one live enrolment per person per course, even under a race (a withdrawal frees it)
        Index("uq_enrolments_live_person", "course_id", "nhs_number", unique=True,
              postgresql_where=text("status <> 'withdrawn'"), sqlite_where=text("status <> 'withdrawn'")),
    )

    course_id: Mapped[str] = mapped_column(String(36), ForeignKey("courses.id"), index=True)
    referral_source: Mapped[str] = mapped_column(String(20))
    priorities: Mapped[list] = mapped_column(Json)
    attendance: Mapped[list] = mapped_column(Json)
    action_plans: Mapped[list] = mapped_column(Json)
    withdrawn_reason: Mapped[str | None] = mapped_column(Text)
    withdrawn_by: Mapped[str | None] = mapped_column(String(20))
    withdrawn_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    completed_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), index=True)

    @property
    def sessions_attended(self) -> int:
        return domain.sessions_attended(self.attendance)

    def rule_met(self, course: Course) -> bool:
        return self.sessions_attended >= course.completion_min_sessions

    def final_session_recorded(self, course: Course) -> bool:
        return domain.final_session_recorded(self.attendance, course.sessions)
