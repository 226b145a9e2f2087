"""What the groups API accepts and returns."""
from __future__ import annotations

from marshmallow import Schema, ValidationError, fields, validate, validates_schema

from coproduction.events import PrioritySchema, StrictBoolean
from coproduction.nhs_number import NHSNumber
from coproduction.paging import limit_field, page_schema
from coproduction.shapes import StrictSchema, TolerantSchema

from .domain import (COURSE_STATUSES, ENROLMENT_STATUSES, PROGRAMMES, REFERRAL_SOURCES,
                     TUTOR_ROLES)

ACHIEVED = ("done", "partly", "not_done")
MAX_SESSIONS = 52
MAX_ACTION_PLANS = 100

Text = lambda n=500, **kw: fields.String(validate=validate.Length(min=1, max=n), **kw)  # noqa: E731


class TutorSchema(StrictSchema):
    name = Text(200, required=True)
    role = fields.String(required=True, validate=validate.OneOf(TUTOR_ROLES),
                         metadata={"description": "lay_tutor (a trained person living with a long-term "
                                                  "condition) or clinician"})


class CourseCreateSchema(StrictSchema):
    programme = fields.String(required=True, validate=validate.OneOf(PROGRAMMES))
    title = Text(200, required=True)
    sessions = fields.Integer(required=True, strict=True, validate=validate.Range(min=1, max=MAX_SESSIONS),
                              metadata={"description": "Number of weekly sessions"})
    session_minutes = fields.Integer(load_default=150, strict=True, validate=validate.Range(min=15, max=480))
    capacity = fields.Integer(required=True, strict=True, validate=validate.Range(min=1, max=500))
    starts_on = fields.Date(required=True, metadata={"description": "Date of session 1; sessions are weekly"})
    venue = Text(200, load_default=None, allow_none=True)
    tutors = fields.List(fields.Nested(TutorSchema), load_default=list, validate=validate.Length(max=10))
    completion_min_sessions = fields.Integer(
        load_default=None, allow_none=True, strict=True, validate=validate.Range(min=1, max=MAX_SESSIONS),
        metadata={"description": "Sessions a person must attend to complete; default from "
                                 "GROUPS_COMPLETION_MIN_SESSIONS (of 6), scaled to the course length"})

    @validates_schema(skip_on_field_errors=False)
    def _rule_fits(self, data, **kwargs):
        wanted, sessions = data.get("completion_min_sessions"), data.get("sessions")
        if wanted is not None and sessions is not None and wanted > sessions:
            raise ValidationError(f"Cannot need more sessions ({wanted}) than the course has ({sessions}).",
                                  "completion_min_sessions")


class CoursePatchSchema(StrictSchema):
    capacity = fields.Integer(strict=True, validate=validate.Range(min=1, max=500))
    session_minutes = fields.Integer(strict=True, validate=validate.Range(min=15, max=480))
    starts_on = fields.Date()
    venue = Text(200, allow_none=True)
    tutors = fields.List(fields.Nested(TutorSchema), validate=validate.Length(max=10))

    @validates_schema
    def _something(self, data, **kwargs):
        if not data:
            raise ValidationError("Send at least one of capacity, session_minutes, starts_on, venue, tutors.")


class ReasonSchema(StrictSchema):
    reason = Text(500, required=True)


class EmptySchema(StrictSchema):
    """A body with no fields."""


class CourseListQuery(Schema):
    programme = fields.String(validate=validate.OneOf(PROGRAMMES))
    status = fields.String(validate=validate.OneOf(COURSE_STATUSES))
    limit = limit_field(500)
    cursor = fields.String(validate=validate.Length(max=200))


class TutorOut(Schema):
    name = fields.String()
    role = fields.String()


class CourseSchema(TolerantSchema):
    """A course as returned (documentation; responses are built by ``api.course_json``)."""

    id = fields.String()
    version = fields.Integer()
    programme = fields.String(validate=validate.OneOf(PROGRAMMES))
    title = fields.String()
    sessions = fields.Integer()
    session_minutes = fields.Integer()
    session_dates = fields.List(fields.String())
    completion_min_sessions = fields.Integer()
    completion_rule = fields.String()
    capacity = fields.Integer()
    places_taken = fields.Integer()
    places_left = fields.Integer()
    starts_on = fields.String()
    venue = fields.String(allow_none=True)
    tutors = fields.List(fields.Nested(TutorOut))
    status = fields.String(validate=validate.OneOf(COURSE_STATUSES))
    status_reason = fields.String(allow_none=True)
    created_at = fields.String()
    updated_at = fields.String()


CourseListSchema = page_schema("CourseListSchema", CourseSchema, withheld=False)


class EnrolmentCreateSchema(StrictSchema):
    nhs_number = NHSNumber(required=True)
    referral_source = fields.String(required=True, validate=validate.OneOf(REFERRAL_SOURCES))
    priorities = fields.List(fields.Nested(PrioritySchema), load_default=list, validate=validate.Length(max=50))
    status = fields.String(load_default="enrolled", validate=validate.OneOf(("referred", "enrolled")),
                           metadata={"description": "referred: a referral the person has not yet accepted "
                                                    "(confirm it later); enrolled: a place taken"})


class AttendanceSchema(StrictSchema):
    session_no = fields.Integer(required=True, strict=True, validate=validate.Range(min=1, max=MAX_SESSIONS))
    attended = StrictBoolean(required=True)


class ActionPlanSchema(StrictSchema):
    """A weekly action plan, as the self-management programmes teach it."""

    week = fields.Integer(required=True, strict=True, validate=validate.Range(min=1, max=MAX_SESSIONS))
    what = Text(300, required=True, metadata={"description": "Something the person wants to do"})
    how_much = Text(200, required=True)
    when = Text(200, required=True)
    how_often = Text(200, required=True)
    confidence = fields.Integer(required=True, strict=True, validate=validate.Range(min=0, max=10),
                                metadata={"description": "0 (not at all) to 10 (totally) confident of "
                                                         "doing the whole plan"})
    result = Text(1000, load_default=None, allow_none=True)
    achieved = fields.String(load_default=None, allow_none=True, validate=validate.OneOf(ACHIEVED))


class ActionResultSchema(StrictSchema):
    result = Text(1000, required=True, metadata={"description": "How it went, in the person's words"})
    achieved = fields.String(required=True, validate=validate.OneOf(ACHIEVED))


class EnrolmentListQuery(Schema):
    nhs_number = NHSNumber()
    course_id = fields.UUID()
    status = fields.String(validate=validate.OneOf(ENROLMENT_STATUSES))
    limit = limit_field(500)
    cursor = fields.String(validate=validate.Length(max=200))

    @validates_schema
    def _one_of(self, data, **kwargs):
        if not data.get("nhs_number") and not data.get("course_id"):
            raise ValidationError("Give nhs_number or course_id.", "nhs_number")


class EnrolmentSchema(TolerantSchema):
    """An enrolment as returned (documentation; responses are built by ``api.enrolment_json``)."""

    id = fields.String()
    version = fields.Integer()
    course_id = fields.String()
    course = fields.Dict()
    nhs_number = fields.String()
    status = fields.String(validate=validate.OneOf(ENROLMENT_STATUSES))
    referral_source = fields.String(validate=validate.OneOf(REFERRAL_SOURCES))
    priorities = fields.List(fields.Dict())
    attendance = fields.List(fields.Dict())
    sessions_attended = fields.Integer()
    completion = fields.Dict()
    action_plans = fields.List(fields.Dict())
    withdrawn_reason = fields.String(allow_none=True)
    withdrawn_by = fields.String(allow_none=True)
    withdrawn_at = fields.String(allow_none=True)
    completed_at = fields.String(allow_none=True)
    created_at = fields.String()
    updated_at = fields.String()


EnrolmentListSchema = page_schema("EnrolmentListSchema", EnrolmentSchema)
