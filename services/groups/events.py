"""The events the groups service publishes, and the schema of each one's data.

Every event is about one enrolment (the aggregate; ``aggregateid`` is the enrolment id, the
subject the person's NHS number) and carries its whole current state: the person's priorities,
the course's title and programme, attendance and action plans, so no consumer needs a second call.
Courses themselves carry no person's data and publish no events.
"""
from __future__ import annotations

from marshmallow import fields, validate

from coproduction.events import PriorityOut, event_type
from coproduction.shapes import TolerantSchema

from .domain import ENROLMENT_STATUSES, PROGRAMMES, REFERRAL_SOURCES

TYPES = ("group.referred", "group.enrolled", "group.attended", "group.action-planned",
         "group.completed", "group.not-completed", "group.withdrawn")


class AttendanceOut(TolerantSchema):
    session_no = fields.Integer(required=True)
    attended = fields.Boolean(required=True)
    recorded_at = fields.String(required=True)


class ActionPlanOut(TolerantSchema):
    id = fields.String(required=True)
    week = fields.Integer(required=True)
    what = fields.String(required=True)
    how_much = fields.String(required=True)
    when = fields.String(required=True)
    how_often = fields.String(required=True)
    confidence = fields.Integer(required=True, validate=validate.Range(min=0, max=10))
    result = fields.String(allow_none=True, required=True)
    achieved = fields.String(allow_none=True, required=True)
    recorded_at = fields.String(required=True)


class EnrolmentEventData(TolerantSchema):
    """Every group event carries the enrolment's current state."""

    enrolment_id = fields.String(required=True)
    course_id = fields.String(required=True)
    title = fields.String(required=True, metadata={"description": "The course's title"})
    programme = fields.String(required=True, validate=validate.OneOf(PROGRAMMES))
    starts_on = fields.String(required=True, metadata={"description": "The course's first session"})
    sessions = fields.Integer(required=True)
    session_minutes = fields.Integer(required=True)
    completion_min_sessions = fields.Integer(required=True)
    course_status = fields.String(required=True)
    status = fields.String(required=True, validate=validate.OneOf(ENROLMENT_STATUSES))
    referral_source = fields.String(required=True, validate=validate.OneOf(REFERRAL_SOURCES))
    priorities = fields.List(fields.Nested(PriorityOut), required=True)
    attendance = fields.List(fields.Nested(AttendanceOut), required=True)
    sessions_attended = fields.Integer(required=True)
    action_plans = fields.List(fields.Nested(ActionPlanOut), required=True)
    reason = fields.String(allow_none=True, required=True,
                           metadata={"description": "Why the person withdrew (group.withdrawn)"})
    withdrawn_at = fields.String(allow_none=True, required=True)
    completed_at = fields.String(allow_none=True, required=True)
    session_no = fields.Integer(allow_none=True, metadata={"description": "group.attended: the session recorded"})
    action_plan_id = fields.String(allow_none=True,
                                   metadata={"description": "group.action-planned: the plan made or updated"})
    changed_by = fields.Dict(required=True)


for _type in TYPES:
    event_type(_type)(EnrolmentEventData)

_PRIORITY = {"id": "5b7a0f0e-0000-4000-8000-000000000002", "text": "Walk my grandson to school",
             "category": "physical_activity", "expressed_by": "person", "rank": None,
             "status": "active", "recorded_at": "2027-04-09T10:00:00Z"}
_PLAN = {"id": "7c2e1d00-0000-4000-8000-000000000003", "week": 1, "what": "walk", "how_much": "15 minutes",
         "when": "after lunch", "how_often": "5 days", "confidence": 8, "result": None, "achieved": None,
         "recorded_at": "2027-04-09T12:00:00Z"}
_SAMPLE = {
    "enrolment_id": "3f0c1d2e-0000-4000-8000-000000000004",
    "course_id": "3f0c1d2e-0000-4000-8000-000000000005",
    "title": "Living well with diabetes", "programme": "expert_patients", "starts_on": "2027-04-09",
    "sessions": 6, "session_minutes": 150, "completion_min_sessions": 4, "course_status": "running",
    "status": "active", "referral_source": "care_plan", "priorities": [_PRIORITY],
    "attendance": [{"session_no": 1, "attended": True, "recorded_at": "2027-04-09T12:00:00Z"}],
    "sessions_attended": 1, "action_plans": [_PLAN], "reason": None, "withdrawn_at": None,
    "completed_at": None, "session_no": None, "action_plan_id": None,
    "changed_by": {"client": "community-1", "org": "VCS01", "role": "community"},
}
_FOUR = [{"session_no": n, "attended": True, "recorded_at": "2027-05-14T12:00:00Z"} for n in range(1, 5)]

#: one sample payload per type: contract tests load each through every consumer's reader
SAMPLES = {
    "group.referred": dict(_SAMPLE, status="referred", attendance=[], sessions_attended=0, action_plans=[],
                           course_status="planned"),
    "group.enrolled": dict(_SAMPLE, status="enrolled", attendance=[], sessions_attended=0, action_plans=[],
                           course_status="planned"),
    "group.attended": dict(_SAMPLE, session_no=1),
    "group.action-planned": dict(_SAMPLE, action_plan_id=_PLAN["id"]),
    "group.completed": dict(_SAMPLE, status="completed", attendance=_FOUR, sessions_attended=4,
                            completed_at="2027-05-14T12:00:00Z"),
    "group.not-completed": dict(_SAMPLE, status="not_completed", course_status="finished"),
    "group.withdrawn": dict(_SAMPLE, status="withdrawn", reason="Started a new job; sessions clash",
                            withdrawn_at="2027-04-23T12:00:00Z"),
}
