"""HTTP routes of the groups service: courses, and people's enrolments on them. Each route reads
the request, runs one command of ``handlers`` in a transaction and answers with the representation."""
from __future__ import annotations

import flask_smorest
from flask import current_app
from sqlalchemy import select
from sqlalchemy.exc import IntegrityError

from coproduction import idempotency
from coproduction.auth import requires
from coproduction.http import ctx, with_etag
from coproduction.paging import keyset_page

from . import domain, handlers
from .models import Course, Enrolment, idempotency_keys
from .schemas import (MAX_ACTION_PLANS, ActionPlanSchema, ActionResultSchema, AttendanceSchema,
                      CourseCreateSchema, CourseListQuery, CourseListSchema, CoursePatchSchema, CourseSchema,
                      EnrolmentCreateSchema, EnrolmentListQuery, EnrolmentListSchema, EnrolmentSchema,
                      ReasonSchema, course_json, enrolment_json)

courses = flask_smorest.Blueprint("courses", __name__, url_prefix="/v1/courses",
                                  description="Self-management courses (Expert Patients Programme, "
                                              "Co-Creating Health) and enrolling people on them")
enrolments = flask_smorest.Blueprint("enrolments", __name__, url_prefix="/v1/enrolments",
                                     description="A person's place on a course: attendance, weekly "
                                                 "action plans, completion, withdrawal")

ONE_PLACE = "This person is already enrolled on this course; a person can hold only one place on a course."


def _create_once(command, answer, lock=lambda session: None, race_conflict: str | None = None):
    """Run ``command`` once per Idempotency-Key (after ``lock``, so a retry racing its own first
    attempt gets the first answer); ``answer`` gives the payload and the Location of the result."""
    db = ctx().db
    try:
        with db.session() as session:
            locked = lock(session)
            stored = idempotency.replay(session, idempotency_keys)
            if stored is not None:
                return stored
            payload, location = answer(session, command(session, locked))
            idempotency.remember(session, idempotency_keys, payload, 201)
    except IntegrityError:
        with db.session() as session:  # a racing retry with the same key (or a racing double enrolment)
            stored = idempotency.replay(session, idempotency_keys)
        if stored is not None:
            return stored
        if race_conflict is None:
            raise
        raise domain.conflict(race_conflict)
    return with_etag(payload, 201, {"Location": location})


def _enrolment_write(command, *args):
    with ctx().db.session() as session:
        course, e = command(session, *args)[:2]
        return with_etag(enrolment_json(e, course))


# -- courses -------------------------------------------------------------------------------
@courses.route("", methods=["POST"])
@requires("groups:write")
@courses.arguments(CourseCreateSchema)
@courses.response(201, CourseSchema)
def create_course(body):
    min_of_six = current_app.config["GROUPS_COMPLETION_MIN_SESSIONS"]
    return _create_once(lambda session, _: handlers.create_course(session, body, min_of_six),
                        lambda session, course: (course_json(course, 0), f"/v1/courses/{course.id}"))


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
        taken = handlers.places_taken(session, [c.id for c in rows])
        return {"items": [course_json(c, taken.get(c.id, 0)) for c in rows], "next_cursor": next_cursor}


@courses.route("/<course_id>", methods=["GET"])
@requires("groups:read")
@courses.response(200, CourseSchema)
def get_course(course_id):
    with ctx().db.session() as session:
        course = handlers.load_course(session, course_id)
        return with_etag(course_json(course, handlers.taken(session, course)))


@courses.route("/<course_id>", methods=["PATCH"])
@requires("groups:write")
@courses.arguments(CoursePatchSchema)
@courses.response(200, CourseSchema)
def patch_course(body, course_id):
    with ctx().db.session() as session:
        course = handlers.change_course(session, course_id, body)
        return with_etag(course_json(course, handlers.taken(session, course)))


def _move_course(course_id: str, action: str, reason: str | None = None):
    with ctx().db.session() as session:
        course, _events = handlers.move_course(session, course_id, action, reason)
        return with_etag(course_json(course, handlers.taken(session, course)))


@courses.route("/<course_id>/start", methods=["POST"])
@requires("groups:write")
@courses.response(200, CourseSchema)
def start_course(course_id):
    return _move_course(course_id, "start")


@courses.route("/<course_id>/finish", methods=["POST"])
@requires("groups:write")
@courses.response(200, CourseSchema)
def finish_course(course_id):
    """Finish the course: every open enrolment is settled by the completion rule."""
    return _move_course(course_id, "finish")


@courses.route("/<course_id>/cancel", methods=["POST"])
@requires("groups:write")
@courses.arguments(ReasonSchema)
@courses.response(200, CourseSchema)
def cancel_course(body, course_id):
    """Cancel the course: every open enrolment is withdrawn, with the reason."""
    return _move_course(course_id, "cancel", body["reason"])


@courses.route("/<course_id>/enrolments", methods=["POST"])
@requires("groups:write")
@courses.arguments(EnrolmentCreateSchema)
@courses.response(201, EnrolmentSchema)
def enrol(body, course_id):
    def answer(_session, result):
        course, e, _event = result
        return enrolment_json(e, course), f"/v1/enrolments/{e.id}"
    # the course's lock serialises its enrolments
    return _create_once(lambda session, course: handlers.enrol(session, course, body), answer,
                        lock=lambda session: handlers.load_course(session, course_id, for_update=True),
                        race_conflict=ONE_PLACE)


# -- enrolments ----------------------------------------------------------------------------
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
        course, e = handlers.load_enrolment(session, enrolment_id)
        return with_etag(enrolment_json(e, course))


@enrolments.route("/<enrolment_id>/confirm", methods=["POST"])
@requires("groups:write")
@enrolments.response(200, EnrolmentSchema)
def confirm(enrolment_id):
    """The referred person takes up their place: referred -> enrolled."""
    return _enrolment_write(handlers.confirm, enrolment_id)


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
    return _enrolment_write(handlers.record_attendance, enrolment_id, body)


@enrolments.route("/<enrolment_id>/action-plans", methods=["POST"])
@requires("groups:write")
@enrolments.arguments(ActionPlanSchema)
@enrolments.response(201, EnrolmentSchema)
def add_action_plan(body, enrolment_id):
    """Record the person's action plan for a week; the response is the whole enrolment."""
    with ctx().db.session() as session:
        course, e, plan, _event = handlers.add_action_plan(session, enrolment_id, body, MAX_ACTION_PLANS)
        return with_etag(enrolment_json(e, course), 201,
                         {"Location": f"/v1/enrolments/{e.id}#action-plan-{plan['id']}"})


@enrolments.route("/<enrolment_id>/action-plans/<plan_id>/result", methods=["POST"])
@requires("groups:write")
@enrolments.arguments(ActionResultSchema)
@enrolments.response(200, EnrolmentSchema)
def record_result(body, enrolment_id, plan_id):
    """Record how an action plan went (usually at the next session); again to correct it."""
    return _enrolment_write(handlers.record_result, enrolment_id, plan_id, body)


@enrolments.route("/<enrolment_id>/withdraw", methods=["POST"])
@requires("groups:write")
@enrolments.arguments(ReasonSchema)
@enrolments.response(200, EnrolmentSchema)
def withdraw(body, enrolment_id):
    """The person leaves the course (their place is freed)."""
    return _enrolment_write(handlers.withdraw, enrolment_id, body)
