"""The rules of self-management courses and of a person's enrolment on one.

Pure functions of a course's and an enrolment's state: nothing here touches the database or
HTTP (a refused change is raised as the 409 or 422 ``Problem`` the API answers with).

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

from coproduction.aggregate import StateMachine
from coproduction.http import Problem

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


def _refusal(kind: str):
    """How a refused action on a course or an enrolment is explained."""
    def refusal(status: str, action: str, possible: tuple[str, ...]) -> str:
        names = ", ".join(ACTION_NAMES[a] for a in possible)
        return (f"A {status.replace('_', ' ')} {kind} cannot be {ACTION_NAMES[action]}"
                + (f"; from {status} it can only be: {names}." if possible else f"; {status} is final."))
    return refusal


COURSE_MACHINE = StateMachine(COURSE_TRANSITIONS, _refusal("course"))
ENROLMENT_MACHINE = StateMachine(ENROLMENT_TRANSITIONS, _refusal("enrolment"))


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


def conflict(detail: str) -> Problem:
    return Problem(409, "Conflict", detail)


def invalid(field: str, message: str) -> Problem:
    return Problem(422, "Unprocessable Content", message, errors={field: [message]})


# -- the completion rule -------------------------------------------------------------------
def completion_rule(min_sessions: int, sessions: int) -> str:
    return f"attend at least {min_sessions} of {sessions} sessions"


def sessions_attended(attendance: list[dict]) -> int:
    return sum(1 for a in attendance if a["attended"])


def final_session_recorded(attendance: list[dict], sessions: int) -> bool:
    return any(a["session_no"] == sessions for a in attendance)


def with_attendance(attendance: list[dict], session_no: int, attended: bool, by: str, at: str) -> list[dict]:
    """Attendance with this session recorded (again for the same session corrects it), in order."""
    current = {a["session_no"]: a for a in attendance}
    current[session_no] = {"session_no": session_no, "attended": attended, "recorded_at": at, "recorded_by": by}
    return [current[k] for k in sorted(current)]


def settlement(course_action: str, enrolment_status: str, rule_met: bool,
               reason: str | None) -> tuple[str, str, str | None]:
    """How an open enrolment closes when its course finishes or is cancelled:
    (the enrolment's action, the event's type, the withdrawal reason if it is withdrawn)."""
    if course_action == "cancel":
        return "withdraw", "group.withdrawn", f"The course was cancelled: {reason}"
    if enrolment_status == "referred":
        return "withdraw", "group.withdrawn", "The referral was not taken up before the course finished."
    if rule_met:
        return "complete", "group.completed", None
    return "not_complete", "group.not-completed", None


# -- what a change needs -------------------------------------------------------------------
def check_course_changeable(course, taken: int, body: dict) -> None:
    if course.status in ("finished", "cancelled"):
        raise conflict(f"The course is {course.status}; it can no longer be changed.")
    if "capacity" in body and body["capacity"] < taken:
        raise conflict(f"{taken} places are already taken; the capacity cannot go below that.")
    if "starts_on" in body and course.status != "planned":
        raise conflict("The course has started; its start date can no longer change.")


def check_can_start(course, action: str) -> None:
    if action == "start" and course.status == "planned" and not course.tutors:
        raise conflict("A course cannot start without a tutor; add one (PATCH tutors) first.")


def check_place_available(course, already, taken: int) -> None:
    """A place can be given while the course is planned or running, once per person, while one is free."""
    if course.status not in ("planned", "running"):
        raise conflict(f"The course is {course.status}; it takes no more enrolments.")
    if already is not None:
        raise conflict(f"This person is already enrolled on this course (enrolment {already.id}, "
                       f"{already.status}); a person can hold only one place on a course.")
    if taken >= course.capacity:
        raise conflict(f"The course is full: all {course.capacity} places are taken. "
                       "Offer the person a place on another course.")


def check_enrolment_open(e, doing: str) -> None:
    if e.status == "referred":
        raise conflict(f"The person has been referred but has not yet taken their place; confirm the "
                       f"enrolment (POST /v1/enrolments/{e.id}/confirm) before {doing}.")
    if e.status not in OPEN:
        raise conflict(f"The enrolment is {e.status.replace('_', ' ')}, which is final: no more {doing}.")


def check_course_running(course, doing: str) -> None:
    if course.status != "running":
        hint = (f"; start it first (POST /v1/courses/{course.id}/start)" if course.status == "planned" else "")
        raise conflict(f"The course is {course.status}: {doing} can only be recorded while it is running{hint}.")
