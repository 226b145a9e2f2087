"""The groups service's commands: courses (create, change, start, finish, cancel) and people's
enrolments on them (enrol, confirm, attendance, action plans, withdraw).

Each runs in the caller's transaction and returns what it changed and the events it wrote to the
outbox (only enrolments publish events: courses hold no person's data), so the API, seed and
bench call them alike. Locks are always taken course first, then enrolment, so course-wide
changes (finish, cancel) and enrolment writes can never deadlock: enrolling locks the course row
FOR UPDATE (capacity and "not twice" are checked under it; a partial unique index backs the second
up), enrolment writes hold the course FOR SHARE and their enrolment FOR UPDATE.
"""
from __future__ import annotations

import uuid

from sqlalchemy import func, select

from coproduction.aggregate import Aggregate, changed_by
from coproduction.auth import service_caller
from coproduction.events import iso, now, stamp_priorities
from coproduction.http import Problem, check_if_match

from . import domain
from .models import Course, Enrolment, outbox


def _public_attendance(e: Enrolment) -> list[dict]:
    return [{"session_no": a["session_no"], "attended": a["attended"], "recorded_at": a["recorded_at"]}
            for a in e.attendance]


def event_data(e: Enrolment, course: Course, session_no: int | None = None,
               action_plan_id: str | None = None) -> dict:
    """An enrolment event's data: the enrolment's whole state and its course's."""
    return {
        "enrolment_id": e.id, "course_id": course.id, "title": course.title, "programme": course.programme,
        "starts_on": course.starts_on.isoformat(), "sessions": course.sessions,
        "session_minutes": course.session_minutes, "completion_min_sessions": course.completion_min_sessions,
        "course_status": course.status, "status": e.status, "referral_source": e.referral_source,
        "priorities": e.priorities, "attendance": _public_attendance(e),
        "sessions_attended": e.sessions_attended, "action_plans": e.action_plans,
        "reason": e.withdrawn_reason, "withdrawn_at": iso(e.withdrawn_at) if e.withdrawn_at else None,
        "completed_at": iso(e.completed_at) if e.completed_at else None,
        "session_no": session_no, "action_plan_id": action_plan_id, "changed_by": changed_by(),
    }


ENROLMENTS = Aggregate("groups", Enrolment, "enrolment", domain.ENROLMENT_MACHINE, outbox, event_data)
#: courses hold no person's data and publish no events: nothing emits through this one
COURSES = Aggregate("groups", Course, "course", domain.COURSE_MACHINE, outbox, event_data=None)


def _bump(session, e: Enrolment, course: Course, type_: str, **details) -> dict:
    """One change of the enrolment: a new version and its event, in the caller's transaction."""
    ENROLMENTS.bump(e)
    return ENROLMENTS.emit(session, e, type_, course=course, **details)


# -- loading and locking -------------------------------------------------------------------
def load_enrolment(session, enrolment_id: str) -> tuple[Course, Enrolment]:
    e = ENROLMENTS.load(session, enrolment_id)
    return session.get(Course, e.course_id), e


def _enrolment_for_write(session, enrolment_id: str) -> tuple[Course, Enrolment]:
    """Course FOR SHARE, then the enrolment FOR UPDATE (always in that order)."""
    course_id = ENROLMENTS.load(session, enrolment_id).course_id
    course = session.execute(select(Course).where(Course.id == course_id).with_for_update(read=True)
                             ).scalar_one()
    e = session.execute(select(Enrolment).where(Enrolment.id == enrolment_id).with_for_update()
                        .execution_options(populate_existing=True)).scalar_one()
    return course, e


def places_taken(session, course_ids: list[str]) -> dict[str, int]:
    if not course_ids:
        return {}
    rows = session.execute(select(Enrolment.course_id, func.count()).where(
        Enrolment.course_id.in_(course_ids), Enrolment.status.in_(domain.HOLDS_A_PLACE)
    ).group_by(Enrolment.course_id)).all()
    return {course_id: n for course_id, n in rows}


def taken(session, course: Course) -> int:
    return places_taken(session, [course.id]).get(course.id, 0)


# -- courses -------------------------------------------------------------------------------
def create_course(session, body: dict, min_of_six: int) -> Course:
    at = now()
    course = Course(
        id=str(uuid.uuid4()), programme=body["programme"], title=body["title"],
        sessions=body["sessions"], session_minutes=body["session_minutes"],
        completion_min_sessions=body["completion_min_sessions"] or domain.default_min_sessions(
            body["sessions"], min_of_six),
        capacity=body["capacity"], starts_on=body["starts_on"], venue=body["venue"], tutors=body["tutors"],
        status="planned", status_reason=None, version=1,
        created_by=service_caller().client_id, created_at=at, updated_at=at)
    session.add(course)
    session.flush()
    return course


def change_course(session, course_id: str, body: dict) -> Course:
    course = COURSES.lock(session, course_id)
    domain.check_course_changeable(course, taken(session, course), body)
    for key, value in body.items():
        setattr(course, key, value)
    COURSES.bump(course)
    return course


def move_course(session, course_id: str, action: str, reason: str | None = None) -> tuple[Course, list[dict]]:
    """Start, finish or cancel a course; finishing or cancelling settles every open enrolment."""
    course = COURSES.lock(session, course_id)
    domain.check_can_start(course, action)
    COURSES.move(course, action)
    course.status_reason = reason
    COURSES.bump(course)
    events = _settle(session, course, action, reason) if action in ("finish", "cancel") else []
    return course, events


def _settle(session, course: Course, action: str, reason: str | None) -> list[dict]:
    """Close every open enrolment of a course that finished or was cancelled."""
    open_ones = session.execute(select(Enrolment).where(Enrolment.course_id == course.id,
                                                        Enrolment.status.in_(domain.OPEN))
                                .order_by(Enrolment.id).with_for_update()).scalars().all()
    at = now()
    events = []
    for e in open_ones:
        enrolment_action, type_, withdrawn_reason = domain.settlement(action, e.status, e.rule_met(course), reason)
        ENROLMENTS.move(e, enrolment_action)
        if enrolment_action == "withdraw":
            e.withdrawn_reason, e.withdrawn_by, e.withdrawn_at = withdrawn_reason, "provider", at
        elif enrolment_action == "complete":
            e.completed_at = at
        events.append(_bump(session, e, course, type_))
    return events


# -- enrolments ----------------------------------------------------------------------------
def enrol(session, course_id: str, body: dict) -> tuple[Course, Enrolment, dict]:
    """Give the person a place on the course, under its lock (capacity and "not twice" hold)."""
    course = COURSES.load(session, course_id, for_update=True)
    already = session.execute(select(Enrolment).where(
        Enrolment.course_id == course.id, Enrolment.nhs_number == body["nhs_number"],
        Enrolment.status != "withdrawn")).scalars().first()
    domain.check_place_available(course, already, taken(session, course))
    at = now()
    e = Enrolment(
        id=str(uuid.uuid4()), course_id=course.id, nhs_number=body["nhs_number"],
        status=body["status"], referral_source=body["referral_source"],
        priorities=stamp_priorities(body["priorities"], at), attendance=[], action_plans=[],
        version=1, created_by=service_caller().client_id, created_at=at, updated_at=at)
    session.add(e)
    return course, e, ENROLMENTS.emit(session, e, "group.referred" if e.status == "referred" else "group.enrolled",
                                      course=course)


def confirm(session, enrolment_id: str) -> tuple[Course, Enrolment, list[dict]]:
    """The referred person takes up their place: referred -> enrolled."""
    course, e = _enrolment_for_write(session, enrolment_id)
    check_if_match(e.version)
    if course.status not in ("planned", "running"):
        raise domain.conflict(f"The course is {course.status}; the place can no longer be taken up.")
    ENROLMENTS.move(e, "confirm")
    return course, e, [_bump(session, e, course, "group.enrolled")]


def record_attendance(session, enrolment_id: str, body: dict) -> tuple[Course, Enrolment, list[dict]]:
    """Record whether the person attended a session; the final one on record may complete them."""
    course, e = _enrolment_for_write(session, enrolment_id)
    n = body["session_no"]
    if n > course.sessions:
        raise domain.invalid("session_no", f"The course has {course.sessions} sessions; session {n} does not exist.")
    check_if_match(e.version)
    domain.check_enrolment_open(e, "attendance")
    domain.check_course_running(course, "attendance")
    if any(a["session_no"] == n and a["attended"] == body["attended"] for a in e.attendance):
        return course, e, []  # already so: nothing changes
    caller = service_caller()
    e.attendance = domain.with_attendance(e.attendance, n, body["attended"], caller.name or caller.client_id,
                                          iso(now()))
    if body["attended"] and e.status == "enrolled":
        ENROLMENTS.move(e, "attend")
    events = [_bump(session, e, course, "group.attended", session_no=n)]
    if e.final_session_recorded(course) and e.rule_met(course):
        ENROLMENTS.move(e, "complete")
        e.completed_at = now()
        events.append(_bump(session, e, course, "group.completed"))
    return course, e, events


def add_action_plan(session, enrolment_id: str, body: dict, most: int) -> tuple[Course, Enrolment, dict, dict]:
    """Record the person's action plan for a week (at most ``most`` per enrolment)."""
    course, e = _enrolment_for_write(session, enrolment_id)
    if body["week"] > course.sessions:
        raise domain.invalid("week", f"The course runs for {course.sessions} weeks; week {body['week']} "
                                     "is not one of them.")
    check_if_match(e.version)
    domain.check_enrolment_open(e, "action plans")
    domain.check_course_running(course, "action plans")
    if len(e.action_plans) >= most:
        raise domain.conflict(f"An enrolment holds at most {most} action plans.")
    at = iso(now())
    plan = {"id": str(uuid.uuid4()), "week": body["week"], "what": body["what"],
            "how_much": body["how_much"], "when": body["when"], "how_often": body["how_often"],
            "confidence": body["confidence"], "result": body["result"], "achieved": body["achieved"],
            "recorded_at": at, "result_recorded_at": at if body["result"] else None}
    e.action_plans = [*e.action_plans, plan]
    return course, e, plan, _bump(session, e, course, "group.action-planned", action_plan_id=plan["id"])


def record_result(session, enrolment_id: str, plan_id: str, body: dict) -> tuple[Course, Enrolment, list[dict]]:
    """Record how an action plan went (usually at the next session); again to correct it."""
    course, e = _enrolment_for_write(session, enrolment_id)
    check_if_match(e.version)
    if not any(p["id"] == plan_id for p in e.action_plans):
        raise Problem(404, "Not Found", "This enrolment has no such action plan.")
    at = iso(now())
    e.action_plans = [dict(p, result=body["result"], achieved=body["achieved"], result_recorded_at=at)
                      if p["id"] == plan_id else p for p in e.action_plans]
    return course, e, [_bump(session, e, course, "group.action-planned", action_plan_id=plan_id)]


def withdraw(session, enrolment_id: str, body: dict) -> tuple[Course, Enrolment, list[dict]]:
    """The person leaves the course (their place is freed)."""
    course, e = _enrolment_for_write(session, enrolment_id)
    check_if_match(e.version)
    ENROLMENTS.move(e, "withdraw")
    e.withdrawn_reason, e.withdrawn_by, e.withdrawn_at = body["reason"], "person", now()
    return course, e, [_bump(session, e, course, "group.withdrawn")]
