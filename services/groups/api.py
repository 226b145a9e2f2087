"""HTTP routes of the groups service: courses, and people's enrolments on them.

Locks are always taken course first, then enrolment, so course-wide changes (finish, cancel) and
enrolment writes can never deadlock: enrolling locks the course row FOR UPDATE (capacity and
"not twice" are checked under it; a partial unique index backs the second up), enrolment writes
hold the course FOR SHARE and their enrolment FOR UPDATE.
"""
from __future__ import annotations

import uuid
from datetime import timedelta

import flask_smorest
from flask import current_app
from sqlalchemy import func, select
from sqlalchemy.exc import IntegrityError

from coproduction import idempotency
from coproduction.auth import requires, service_caller
from coproduction.events import iso, now, stamp_priorities
from coproduction.http import Problem, check_if_match, ctx, traceparent, with_etag
from coproduction.outbox import emit
from coproduction.paging import keyset_page

from .models import (HOLDS_A_PLACE, OPEN, Course, Enrolment, IllegalTransition, default_min_sessions,
                     idempotency_keys, outbox)
from .schemas import (MAX_ACTION_PLANS, ActionPlanSchema, ActionResultSchema, AttendanceSchema,
                      CourseCreateSchema, CourseListQuery, CourseListSchema, CoursePatchSchema, CourseSchema,
                      EnrolmentCreateSchema, EnrolmentListQuery, EnrolmentListSchema, EnrolmentSchema,
                      ReasonSchema)

courses = flask_smorest.Blueprint("courses", __name__, url_prefix="/v1/courses",
                                  description="Self-management courses (Expert Patients Programme, "
                                              "Co-Creating Health) and enrolling people on them")
enrolments = flask_smorest.Blueprint("enrolments", __name__, url_prefix="/v1/enrolments",
                                     description="A person's place on a course: attendance, weekly "
                                                 "action plans, completion, withdrawal")


# -- representations -----------------------------------------------------------------------------
def _places_taken(session, course_ids: list[str]) -> dict[str, int]:
    if not course_ids:
        return {}
    rows = session.execute(select(Enrolment.course_id, func.count()).where(
        Enrolment.course_id.in_(course_ids), Enrolment.status.in_(HOLDS_A_PLACE)
    ).group_by(Enrolment.course_id)).all()
    return {course_id: n for course_id, n in rows}


def course_json(course: Course, taken: int) -> dict:
    return {
        "id": course.id, "version": course.version, "programme": course.programme, "title": course.title,
        "sessions": course.sessions, "session_minutes": course.session_minutes,
        "session_dates": [(course.starts_on + timedelta(weeks=n)).isoformat() for n in range(course.sessions)],
        "completion_min_sessions": course.completion_min_sessions, "completion_rule": course.rule,
        "capacity": course.capacity, "places_taken": taken, "places_left": max(0, course.capacity - taken),
        "starts_on": course.starts_on.isoformat(), "venue": course.venue, "tutors": course.tutors,
        "status": course.status, "status_reason": course.status_reason,
        "created_at": iso(course.created_at), "updated_at": iso(course.updated_at),
    }


def _course_summary(course: Course) -> dict:
    return {"id": course.id, "title": course.title, "programme": course.programme,
            "starts_on": course.starts_on.isoformat(), "sessions": course.sessions,
            "session_minutes": course.session_minutes, "status": course.status}


def enrolment_json(e: Enrolment, course: Course) -> dict:
    return {
        "id": e.id, "version": e.version, "course_id": e.course_id, "course": _course_summary(course),
        "nhs_number": e.nhs_number, "status": e.status, "referral_source": e.referral_source,
        "priorities": e.priorities, "attendance": e.attendance, "sessions_attended": e.sessions_attended,
        "completion": {"rule": course.rule, "min_sessions": course.completion_min_sessions,
                       "sessions_attended": e.sessions_attended, "met": e.rule_met(course),
                       "final_session_recorded": e.final_session_recorded(course)},
        "action_plans": e.action_plans,
        "withdrawn_reason": e.withdrawn_reason, "withdrawn_by": e.withdrawn_by,
        "withdrawn_at": iso(e.withdrawn_at) if e.withdrawn_at else None,
        "completed_at": iso(e.completed_at) if e.completed_at else None,
        "created_at": iso(e.created_at), "updated_at": iso(e.updated_at),
    }


def _public_attendance(e: Enrolment) -> list[dict]:
    return [{"session_no": a["session_no"], "attended": a["attended"], "recorded_at": a["recorded_at"]}
            for a in e.attendance]


def _emit(session, e: Enrolment, course: Course, type_: str, **extra) -> None:
    caller = service_caller()
    data = {
        "enrolment_id": e.id, "course_id": course.id, "title": course.title, "programme": course.programme,
        "starts_on": course.starts_on.isoformat(), "sessions": course.sessions,
        "session_minutes": course.session_minutes, "completion_min_sessions": course.completion_min_sessions,
        "course_status": course.status, "status": e.status, "referral_source": e.referral_source,
        "priorities": e.priorities, "attendance": _public_attendance(e),
        "sessions_attended": e.sessions_attended, "action_plans": e.action_plans,
        "reason": e.withdrawn_reason, "withdrawn_at": iso(e.withdrawn_at) if e.withdrawn_at else None,
        "completed_at": iso(e.completed_at) if e.completed_at else None,
        "session_no": extra.get("session_no"), "action_plan_id": extra.get("action_plan_id"),
        "changed_by": {"client": caller.client_id, "org": caller.org, "role": caller.role},
    }
    emit(session, outbox, service="groups", type=type_, subject=e.nhs_number, aggregate_id=e.id,
         aggregate_version=e.version, data=data, traceparent=traceparent())


def _bump(session, e: Enrolment, course: Course, type_: str, **extra) -> None:
    """One change of the enrolment: a new version and its event, in the caller's transaction."""
    e.version += 1
    e.updated_at = now()
    session.flush()
    _emit(session, e, course, type_, **extra)


# -- loading and locking -------------------------------------------------------------------------
def _uuid_or_404(value: str, what: str) -> None:
    try:
        uuid.UUID(value)
    except ValueError:
        raise Problem(404, "Not Found", f"No such {what}.")


def _course(session, course_id: str, lock: str | None = None) -> Course:
    _uuid_or_404(course_id, "course")
    stmt = select(Course).where(Course.id == course_id)
    if lock == "update":
        stmt = stmt.with_for_update()
    elif lock == "share":
        stmt = stmt.with_for_update(read=True)
    course = session.execute(stmt).scalar_one_or_none()
    if course is None:
        raise Problem(404, "Not Found", "No such course.")
    return course


def _enrolment_for_write(session, enrolment_id: str) -> tuple[Course, Enrolment]:
    """Course FOR SHARE, then the enrolment FOR UPDATE (always in that order)."""
    _uuid_or_404(enrolment_id, "enrolment")
    course_id = session.execute(select(Enrolment.course_id).where(Enrolment.id == enrolment_id)
                                ).scalar_one_or_none()
    if course_id is None:
        raise Problem(404, "Not Found", "No such enrolment.")
    course = _course(session, course_id, lock="share")
    e = session.execute(select(Enrolment).where(Enrolment.id == enrolment_id).with_for_update()
                        .execution_options(populate_existing=True)).scalar_one()
    return course, e


def _conflict(detail: str) -> Problem:
    return Problem(409, "Conflict", detail)


def _invalid(field: str, message: str) -> Problem:
    return Problem(422, "Unprocessable Content", message, errors={field: [message]})


def _must_be_open(e: Enrolment, doing: str) -> None:
    if e.status == "referred":
        raise _conflict(f"The person has been referred but has not yet taken their place; confirm the "
                        f"enrolment (POST /v1/enrolments/{e.id}/confirm) before {doing}.")
    if e.status not in OPEN:
        raise _conflict(f"The enrolment is {e.status.replace('_', ' ')}, which is final: no more {doing}.")


def _must_be_running(course: Course, doing: str) -> None:
    if course.status != "running":
        hint = (f"; start it first (POST /v1/courses/{course.id}/start)" if course.status == "planned" else "")
        raise _conflict(f"The course is {course.status}: {doing} can only be recorded while it is running{hint}.")


# -- pagination ----------------------------------------------------------------------------------
# -- courses -------------------------------------------------------------------------------------
@courses.route("", methods=["POST"])
@requires("groups:write")
@courses.arguments(CourseCreateSchema)
@courses.response(201, CourseSchema)
def create_course(body):
    db = ctx().db
    try:
        with db.session() as session:
            stored = idempotency.replay(session, idempotency_keys)
            if stored is not None:
                return stored
            at = now()
            min_sessions = body["completion_min_sessions"] or default_min_sessions(
                body["sessions"], current_app.config["GROUPS_COMPLETION_MIN_SESSIONS"])
            course = Course(
                id=str(uuid.uuid4()), programme=body["programme"], title=body["title"],
                sessions=body["sessions"], session_minutes=body["session_minutes"],
                completion_min_sessions=min_sessions, capacity=body["capacity"],
                starts_on=body["starts_on"], venue=body["venue"], tutors=body["tutors"],
                status="planned", status_reason=None, version=1,
                created_by=service_caller().client_id, created_at=at, updated_at=at)
            session.add(course)
            session.flush()
            payload = course_json(course, 0)
            idempotency.remember(session, idempotency_keys, payload, 201)
    except IntegrityError:
        with db.session() as session:  # lost a race on the same Idempotency-Key
            stored = idempotency.replay(session, idempotency_keys)
        if stored is None:
            raise
        return stored
    return with_etag(payload, 201, {"Location": f"/v1/courses/{course.id}"})


@courses.route("", methods=["GET"])
@requires("groups:read")
@courses.arguments(CourseListQuery, location="query")
@courses.response(200, CourseListSchema)
def list_courses(query):
    with ctx().db.session() as session:
        stmt = select(Course)
        if query.get("programme"):
            stmt = stmt.where(Course.programme == query["programme"])
        if query.get("status"):
            stmt = stmt.where(Course.status == query["status"])
        rows, next_cursor = keyset_page(session, stmt, Course, query["limit"], query.get("cursor"))
        taken = _places_taken(session, [c.id for c in rows])
        return {"items": [course_json(c, taken.get(c.id, 0)) for c in rows], "next_cursor": next_cursor}


@courses.route("/<course_id>", methods=["GET"])
@requires("groups:read")
@courses.response(200, CourseSchema)
def get_course(course_id):
    with ctx().db.session() as session:
        course = _course(session, course_id)
        return with_etag(course_json(course, _places_taken(session, [course.id]).get(course.id, 0)))


@courses.route("/<course_id>", methods=["PATCH"])
@requires("groups:write")
@courses.arguments(CoursePatchSchema)
@courses.response(200, CourseSchema)
def patch_course(body, course_id):
    with ctx().db.session() as session:
        course = _course(session, course_id, lock="update")
        check_if_match(course.version)
        if course.status in ("finished", "cancelled"):
            raise _conflict(f"The course is {course.status}; it can no longer be changed.")
        taken = _places_taken(session, [course.id]).get(course.id, 0)
        if "capacity" in body and body["capacity"] < taken:
            raise _conflict(f"{taken} places are already taken; the capacity cannot go below that.")
        if "starts_on" in body and course.status != "planned":
            raise _conflict("The course has started; its start date can no longer change.")
        for key, value in body.items():
            setattr(course, key, value)
        course.version += 1
        course.updated_at = now()
        return with_etag(course_json(course, taken))


def _course_action(course_id: str, action: str, reason: str | None = None):
    with ctx().db.session() as session:
        course = _course(session, course_id, lock="update")
        check_if_match(course.version)
        if action == "start" and course.status == "planned" and not course.tutors:
            raise _conflict("A course cannot start without a tutor; add one (PATCH tutors) first.")
        try:
            course.transition(action)
        except IllegalTransition as exc:
            raise _conflict(str(exc))
        course.status_reason = reason
        course.version += 1
        course.updated_at = now()
        if action in ("finish", "cancel"):
            _settle(session, course, action, reason)
        taken = _places_taken(session, [course.id]).get(course.id, 0)
        return with_etag(course_json(course, taken))


def _settle(session, course: Course, action: str, reason: str | None) -> None:
    """Close every open enrolment of a course that finished or was cancelled."""
    open_ones = session.execute(select(Enrolment).where(Enrolment.course_id == course.id,
                                                        Enrolment.status.in_(OPEN))
                                .order_by(Enrolment.id).with_for_update()).scalars().all()
    at = now()
    for e in open_ones:
        if action == "cancel":
            e.transition("withdraw")
            e.withdrawn_reason, e.withdrawn_by, e.withdrawn_at = f"The course was cancelled: {reason}", "provider", at
            _bump(session, e, course, "group.withdrawn")
        elif e.status == "referred":
            e.transition("withdraw")
            e.withdrawn_reason = "The referral was not taken up before the course finished."
            e.withdrawn_by, e.withdrawn_at = "provider", at
            _bump(session, e, course, "group.withdrawn")
        elif e.rule_met(course):
            e.transition("complete")
            e.completed_at = at
            _bump(session, e, course, "group.completed")
        else:
            e.transition("not_complete")
            _bump(session, e, course, "group.not-completed")


@courses.route("/<course_id>/start", methods=["POST"])
@requires("groups:write")
@courses.response(200, CourseSchema)
def start_course(course_id):
    return _course_action(course_id, "start")


@courses.route("/<course_id>/finish", methods=["POST"])
@requires("groups:write")
@courses.response(200, CourseSchema)
def finish_course(course_id):
    """Finish the course: every open enrolment is settled by the completion rule."""
    return _course_action(course_id, "finish")


@courses.route("/<course_id>/cancel", methods=["POST"])
@requires("groups:write")
@courses.arguments(ReasonSchema)
@courses.response(200, CourseSchema)
def cancel_course(body, course_id):
    """Cancel the course: every open enrolment is withdrawn, with the reason."""
    return _course_action(course_id, "cancel", body["reason"])


@courses.route("/<course_id>/enrolments", methods=["POST"])
@requires("groups:write")
@courses.arguments(EnrolmentCreateSchema)
@courses.response(201, EnrolmentSchema)
def enrol(body, course_id):
    db = ctx().db
    try:
        with db.session() as session:
            course = _course(session, course_id, lock="update")  # serialises this course's enrolments
            # after the lock, so a retry racing its own first attempt gets the first answer, not a 409
            stored = idempotency.replay(session, idempotency_keys)
            if stored is not None:
                return stored
            if course.status not in ("planned", "running"):
                raise _conflict(f"The course is {course.status}; it takes no more enrolments.")
            already = session.execute(select(Enrolment).where(
                Enrolment.course_id == course.id, Enrolment.nhs_number == body["nhs_number"],
                Enrolment.status != "withdrawn")).scalars().first()
            if already is not None:
                raise _conflict(f"This person is already enrolled on this course (enrolment {already.id}, "
                                f"{already.status}); a person can hold only one place on a course.")
            taken = _places_taken(session, [course.id]).get(course.id, 0)
            if taken >= course.capacity:
                raise _conflict(f"The course is full: all {course.capacity} places are taken. "
                                "Offer the person a place on another course.")
            at = now()
            e = Enrolment(
                id=str(uuid.uuid4()), course_id=course.id, nhs_number=body["nhs_number"],
                status=body["status"], referral_source=body["referral_source"],
                priorities=stamp_priorities(body["priorities"], at), attendance=[], action_plans=[],
                version=1, created_by=service_caller().client_id, created_at=at, updated_at=at)
            session.add(e)
            session.flush()
            _emit(session, e, course, "group.referred" if e.status == "referred" else "group.enrolled")
            payload = enrolment_json(e, course)
            idempotency.remember(session, idempotency_keys, payload, 201)
    except IntegrityError:
        with db.session() as session:  # a racing retry with the same key, or a racing double enrolment
            stored = idempotency.replay(session, idempotency_keys)
        if stored is not None:
            return stored
        raise _conflict("This person is already enrolled on this course; a person can hold only one "
                        "place on a course.")
    return with_etag(payload, 201, {"Location": f"/v1/enrolments/{e.id}"})


# -- enrolments ----------------------------------------------------------------------------------
@enrolments.route("", methods=["GET"])
@requires("groups:read")
@enrolments.arguments(EnrolmentListQuery, location="query")
@enrolments.response(200, EnrolmentListSchema)
def list_enrolments(query):
    with ctx().db.session() as session:
        stmt = select(Enrolment)
        if query.get("nhs_number"):
            stmt = stmt.where(Enrolment.nhs_number == query["nhs_number"])
        if query.get("course_id"):
            stmt = stmt.where(Enrolment.course_id == str(query["course_id"]))
        if query.get("status"):
            stmt = stmt.where(Enrolment.status == query["status"])
        rows, next_cursor = keyset_page(session, stmt, Enrolment, query["limit"], query.get("cursor"))
        course_ids = sorted({e.course_id for e in rows})
        by_id = {c.id: c for c in session.execute(select(Course).where(Course.id.in_(course_ids))).scalars()}
        return {"items": [enrolment_json(e, by_id[e.course_id]) for e in rows], "next_cursor": next_cursor}


@enrolments.route("/<enrolment_id>", methods=["GET"])
@requires("groups:read")
@enrolments.response(200, EnrolmentSchema)
def get_enrolment(enrolment_id):
    with ctx().db.session() as session:
        _uuid_or_404(enrolment_id, "enrolment")
        e = session.get(Enrolment, enrolment_id)
        if e is None:
            raise Problem(404, "Not Found", "No such enrolment.")
        return with_etag(enrolment_json(e, session.get(Course, e.course_id)))


@enrolments.route("/<enrolment_id>/confirm", methods=["POST"])
@requires("groups:write")
@enrolments.response(200, EnrolmentSchema)
def confirm(enrolment_id):
    """The referred person takes up their place: referred -> enrolled."""
    with ctx().db.session() as session:
        course, e = _enrolment_for_write(session, enrolment_id)
        check_if_match(e.version)
        if course.status not in ("planned", "running"):
            raise _conflict(f"The course is {course.status}; the place can no longer be taken up.")
        try:
            e.transition("confirm")
        except IllegalTransition as exc:
            raise _conflict(str(exc))
        _bump(session, e, course, "group.enrolled")
        return with_etag(enrolment_json(e, course))


@enrolments.route("/<enrolment_id>/attendance", methods=["POST"])
@requires("groups:write")
@enrolments.arguments(AttendanceSchema)
@enrolments.response(200, EnrolmentSchema)
def record_attendance(body, enrolment_id):
    """Record whether the person attended a session (again for the same session corrects it).

    When attendance for the final session is on record and the person attended at least the
    course's ``completion_min_sessions``, the enrolment completes (a ``group.completed`` event
    follows the ``group.attended`` one).
    """
    with ctx().db.session() as session:
        course, e = _enrolment_for_write(session, enrolment_id)
        n = body["session_no"]
        if n > course.sessions:
            raise _invalid("session_no", f"The course has {course.sessions} sessions; session {n} does not exist.")
        check_if_match(e.version)
        _must_be_open(e, "attendance")
        _must_be_running(course, "attendance")
        current = {a["session_no"]: a for a in e.attendance}
        if n in current and current[n]["attended"] == body["attended"]:
            return with_etag(enrolment_json(e, course))  # already so: nothing changes
        caller = service_caller()
        current[n] = {"session_no": n, "attended": body["attended"], "recorded_at": iso(now()),
                      "recorded_by": caller.name or caller.client_id}
        e.attendance = [current[k] for k in sorted(current)]
        if body["attended"] and e.status == "enrolled":
            e.transition("attend")
        _bump(session, e, course, "group.attended", session_no=n)
        if e.final_session_recorded(course) and e.rule_met(course):
            e.transition("complete")
            e.completed_at = now()
            _bump(session, e, course, "group.completed")
        return with_etag(enrolment_json(e, course))


@enrolments.route("/<enrolment_id>/action-plans", methods=["POST"])
@requires("groups:write")
@enrolments.arguments(ActionPlanSchema)
@enrolments.response(201, EnrolmentSchema)
def add_action_plan(body, enrolment_id):
    """Record the person's action plan for a week; the response is the whole enrolment."""
    with ctx().db.session() as session:
        course, e = _enrolment_for_write(session, enrolment_id)
        if body["week"] > course.sessions:
            raise _invalid("week", f"The course runs for {course.sessions} weeks; week {body['week']} "
                                   "is not one of them.")
        check_if_match(e.version)
        _must_be_open(e, "action plans")
        _must_be_running(course, "action plans")
        if len(e.action_plans) >= MAX_ACTION_PLANS:
            raise _conflict(f"An enrolment holds at most {MAX_ACTION_PLANS} action plans.")
        at = iso(now())
        plan = {"id": str(uuid.uuid4()), "week": body["week"], "what": body["what"],
                "how_much": body["how_much"], "when": body["when"], "how_often": body["how_often"],
                "confidence": body["confidence"], "result": body["result"], "achieved": body["achieved"],
                "recorded_at": at, "result_recorded_at": at if body["result"] else None}
        e.action_plans = [*e.action_plans, plan]
        _bump(session, e, course, "group.action-planned", action_plan_id=plan["id"])
        return with_etag(enrolment_json(e, course), 201,
                         {"Location": f"/v1/enrolments/{e.id}#action-plan-{plan['id']}"})


@enrolments.route("/<enrolment_id>/action-plans/<plan_id>/result", methods=["POST"])
@requires("groups:write")
@enrolments.arguments(ActionResultSchema)
@enrolments.response(200, EnrolmentSchema)
def record_result(body, enrolment_id, plan_id):
    """Record how an action plan went (usually at the next session); again to correct it."""
    with ctx().db.session() as session:
        course, e = _enrolment_for_write(session, enrolment_id)
        check_if_match(e.version)
        if not any(p["id"] == plan_id for p in e.action_plans):
            raise Problem(404, "Not Found", "This enrolment has no such action plan.")
        at = iso(now())
        e.action_plans = [dict(p, result=body["result"], achieved=body["achieved"], result_recorded_at=at)
                          if p["id"] == plan_id else p for p in e.action_plans]
        _bump(session, e, course, "group.action-planned", action_plan_id=plan_id)
        return with_etag(enrolment_json(e, course))


@enrolments.route("/<enrolment_id>/withdraw", methods=["POST"])
@requires("groups:write")
@enrolments.arguments(ReasonSchema)
@enrolments.response(200, EnrolmentSchema)
def withdraw(body, enrolment_id):
    """The person leaves the course (their place is freed)."""
    with ctx().db.session() as session:
        course, e = _enrolment_for_write(session, enrolment_id)
        check_if_match(e.version)
        try:
            e.transition("withdraw")
        except IllegalTransition as exc:
            raise _conflict(str(exc))
        e.withdrawn_reason, e.withdrawn_by, e.withdrawn_at = body["reason"], "person", now()
        _bump(session, e, course, "group.withdrawn")
        return with_etag(enrolment_json(e, course))
