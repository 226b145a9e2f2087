"""HTTP routes of the groups service: courses, and people's enrolments on them. Each route reads
the request, runs one command of ``handlers`` in a transaction and answers with the representation."""
from __future__ import annotations

from datetime import timedelta

import flask_smorest
from flask import current_app
from sqlalchemy import select

from coproduction.events import iso
from coproduction.http import ctx, with_etag
from coproduction.idempotency import create_once
from coproduction.paging import keyset_page, where_given
from coproduction.routes import action_routes, endpoint

from . import domain, handlers
from .handlers import COURSES
from .models import Course, Enrolment, idempotency_keys
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

ONE_PLACE = "This person is already enrolled on this course; a person can hold only one place on a course."


# -- representations -----------------------------------------------------------------------
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


def _enrolment_write(command, *args):
    with ctx().db.session() as session:
        course, e = command(session, *args)[:2]
        return with_etag(enrolment_json(e, course))


# -- courses -------------------------------------------------------------------------------
@endpoint(courses, "", "groups:write", CourseSchema, method="POST", body=CourseCreateSchema, status=201)
def create_course(body):
    min_of_six = current_app.config["GROUPS_COMPLETION_MIN_SESSIONS"]

    def create(session):
        course = handlers.create_course(session, body, min_of_six)
        return course_json(course, 0), f"/v1/courses/{course.id}"
    return create_once(idempotency_keys, create)


@endpoint(courses, "", "groups:read", CourseListSchema, body=CourseListQuery, location="query")
def list_courses(query):
    with ctx().db.session() as session:
        stmt = where_given(select(Course), Course, query, "programme", "status")
        rows, next_cursor = keyset_page(session, stmt, Course, query["limit"], query.get("cursor"))
        taken = handlers.places_taken(session, [c.id for c in rows])
        return {"items": [course_json(c, taken.get(c.id, 0)) for c in rows], "next_cursor": next_cursor}


@endpoint(courses, "/<course_id>", "groups:read", CourseSchema)
def get_course(course_id):
    with ctx().db.session() as session:
        course = COURSES.load(session, course_id)
        return with_etag(course_json(course, handlers.taken(session, course)))


@endpoint(courses, "/<course_id>", "groups:write", CourseSchema, method="PATCH", body=CoursePatchSchema)
def patch_course(body, course_id):
    with ctx().db.session() as session:
        course = handlers.change_course(session, course_id, body)
        return with_etag(course_json(course, handlers.taken(session, course)))


def _move_course(action: str, body: dict | None, course_id: str):
    with ctx().db.session() as session:
        course, _events = handlers.move_course(session, course_id, action, body["reason"] if body else None)
        return with_etag(course_json(course, handlers.taken(session, course)))


action_routes(courses, "/<course_id>/{action}", "groups:write", CourseSchema, "{action}_course", _move_course,
              [
                  ("start", None, None),
                  ("finish", None, "Finish the course: every open enrolment is settled by the completion rule."),
                  ("cancel", ReasonSchema, "Cancel the course: every open enrolment is withdrawn, with the reason."),
              ])


@endpoint(courses, "/<course_id>/enrolments", "groups:write", EnrolmentSchema, method="POST",
          body=EnrolmentCreateSchema, status=201)
def enrol(body, course_id):
    def create(session):
        course, e, _event = handlers.enrol(session, course_id, body)
        return enrolment_json(e, course), f"/v1/enrolments/{e.id}"
    # the course's lock serialises its enrolments; a race the lock cannot see (a double
    # enrolment on another key) is stopped by the unique index
    return create_once(idempotency_keys, create, lock=lambda session: COURSES.load(session, course_id, True),
                       conflict=lambda: domain.conflict(ONE_PLACE))


# -- enrolments ----------------------------------------------------------------------------
@endpoint(enrolments, "", "groups:read", EnrolmentListSchema, body=EnrolmentListQuery, location="query")
def list_enrolments(query):
    with ctx().db.session() as session:
        stmt = where_given(select(Enrolment), Enrolment, query, "nhs_number", "course_id", "status")
        rows, next_cursor = keyset_page(session, stmt, Enrolment, query["limit"], query.get("cursor"))
        course_ids = sorted({e.course_id for e in rows})
        by_id = {c.id: c for c in session.execute(select(Course).where(Course.id.in_(course_ids))).scalars()}
        return {"items": [enrolment_json(e, by_id[e.course_id]) for e in rows], "next_cursor": next_cursor}


@endpoint(enrolments, "/<enrolment_id>", "groups:read", EnrolmentSchema)
def get_enrolment(enrolment_id):
    with ctx().db.session() as session:
        course, e = handlers.load_enrolment(session, enrolment_id)
        return with_etag(enrolment_json(e, course))


@endpoint(enrolments, "/<enrolment_id>/confirm", "groups:write", EnrolmentSchema, method="POST")
def confirm(enrolment_id):
    """The referred person takes up their place: referred -> enrolled."""
    return _enrolment_write(handlers.confirm, enrolment_id)


@endpoint(enrolments, "/<enrolment_id>/attendance", "groups:write", EnrolmentSchema, method="POST",
          body=AttendanceSchema)
def record_attendance(body, enrolment_id):
    """Record whether the person attended a session (again for the same session corrects it).

    When attendance for the final session is on record and the person attended at least the
    course's ``completion_min_sessions``, the enrolment completes (a ``group.completed`` event
    follows the ``group.attended`` one).
    """
    return _enrolment_write(handlers.record_attendance, enrolment_id, body)


@endpoint(enrolments, "/<enrolment_id>/action-plans", "groups:write", EnrolmentSchema, method="POST",
          body=ActionPlanSchema, status=201)
def add_action_plan(body, enrolment_id):
    """Record the person's action plan for a week; the response is the whole enrolment."""
    with ctx().db.session() as session:
        course, e, plan, _event = handlers.add_action_plan(session, enrolment_id, body, MAX_ACTION_PLANS)
        return with_etag(enrolment_json(e, course), 201,
                         {"Location": f"/v1/enrolments/{e.id}#action-plan-{plan['id']}"})


@endpoint(enrolments, "/<enrolment_id>/action-plans/<plan_id>/result", "groups:write", EnrolmentSchema,
          method="POST", body=ActionResultSchema)
def record_result(body, enrolment_id, plan_id):
    """Record how an action plan went (usually at the next session); again to correct it."""
    return _enrolment_write(handlers.record_result, enrolment_id, plan_id, body)


@endpoint(enrolments, "/<enrolment_id>/withdraw", "groups:write", EnrolmentSchema, method="POST",
          body=ReasonSchema)
def withdraw(body, enrolment_id):
    """The person leaves the course (their place is freed)."""
    return _enrolment_write(handlers.withdraw, enrolment_id, body)
