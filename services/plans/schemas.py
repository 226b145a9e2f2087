"""What the plans API accepts and returns."""
from __future__ import annotations

from marshmallow import EXCLUDE, RAISE, Schema, ValidationError, fields, validate, validates_schema

from coproduction.events import PrioritySchema
from coproduction.nhs_number import NHSNumber

GOAL_LIFECYCLE = ("proposed", "planned", "accepted", "active", "on-hold", "completed", "cancelled",
                  "rejected")
GOAL_ACHIEVEMENT = ("in-progress", "improving", "worsening", "no-change", "achieved", "sustaining",
                    "not-achieved", "no-progress", "not-attainable")
ACTION_OWNERS = ("person", "practice", "community")
ACTION_STATUSES = ("to_do", "in_progress", "done", "cancelled")
PLAN_STATUSES = ("draft", "active", "on_hold", "completed", "revoked")

Text = lambda n=500, **kw: fields.String(validate=validate.Length(min=1, max=n), **kw)  # noqa: E731


class TargetSchema(Schema):
    class Meta:
        unknown = RAISE

    measure = Text(200, required=True)
    value = fields.Float(allow_none=True, load_default=None)
    unit = Text(50, load_default=None, allow_none=True)
    due = fields.Date(load_default=None, allow_none=True)


class GoalSchema(Schema):
    class Meta:
        unknown = RAISE

    id = fields.UUID(load_default=None)
    description = Text(500, required=True)
    target = fields.Nested(TargetSchema, load_default=None, allow_none=True)
    lifecycle_status = fields.String(load_default="active", validate=validate.OneOf(GOAL_LIFECYCLE))
    achievement_status = fields.String(load_default="in-progress", validate=validate.OneOf(GOAL_ACHIEVEMENT))
    priority_ids = fields.List(fields.UUID(), load_default=list, validate=validate.Length(max=20))


class ActionSchema(Schema):
    class Meta:
        unknown = RAISE

    id = fields.UUID(load_default=None)
    text = Text(500, required=True)
    owner = fields.String(required=True, validate=validate.OneOf(ACTION_OWNERS))
    due = fields.Date(load_default=None, allow_none=True)
    status = fields.String(load_default="to_do", validate=validate.OneOf(ACTION_STATUSES))


class ResultSchema(Schema):
    class Meta:
        unknown = RAISE

    name = Text(200, required=True)
    value = Text(100, required=True)
    unit = Text(50, load_default=None, allow_none=True)
    taken_on = fields.Date(load_default=None, allow_none=True)


class PlanCreateSchema(Schema):
    class Meta:
        unknown = RAISE

    nhs_number = NHSNumber(required=True)
    conditions = fields.List(Text(200), load_default=list, validate=validate.Length(max=50))
    priorities = fields.List(fields.Nested(PrioritySchema), load_default=list, validate=validate.Length(max=50))
    goals = fields.List(fields.Nested(GoalSchema), load_default=list, validate=validate.Length(max=50))
    actions = fields.List(fields.Nested(ActionSchema), load_default=list, validate=validate.Length(max=100))
    next_review_date = fields.Date(load_default=None, allow_none=True)
    results = fields.List(fields.Nested(ResultSchema), load_default=list, validate=validate.Length(max=100))
    results_shared_at = fields.AwareDateTime(load_default=None, allow_none=True)
    care_coordinator = Text(200, load_default=None, allow_none=True)

    @validates_schema
    def _dates(self, data, **kwargs):
        from coproduction.events import now
        review = data.get("next_review_date")
        if review is not None and review < now().date():
            raise ValidationError("The review date cannot be before the plan.", "next_review_date")


class AgreeSchema(Schema):
    class Meta:
        unknown = RAISE

    agreed_by = Text(200, required=True, metadata={"description": "The professional who agreed the plan"})
    person_agreed = fields.Boolean(required=True)


class PlanSchema(Schema):
    """A plan as returned (documentation; responses are built by ``api.plan_json``)."""

    class Meta:
        unknown = EXCLUDE

    id = fields.String()
    version = fields.Integer()
    status = fields.String(validate=validate.OneOf(PLAN_STATUSES))
    nhs_number = fields.String()
    conditions = fields.List(fields.String())
    priorities = fields.List(fields.Dict())
    goals = fields.List(fields.Dict())
    actions = fields.List(fields.Dict())
    next_review_date = fields.String(allow_none=True)
    results = fields.List(fields.Dict())
    results_shared_at = fields.String(allow_none=True)
    care_coordinator = fields.String(allow_none=True)
    agreed_by = fields.String(allow_none=True)
    person_agreed = fields.Boolean(allow_none=True)
    agreed_at = fields.String(allow_none=True)
    created_at = fields.String()
    updated_at = fields.String()


class PlanListQuery(Schema):
    nhs_number = NHSNumber(required=True)


class PlanListSchema(Schema):
    items = fields.List(fields.Nested(PlanSchema))
    next_cursor = fields.String(allow_none=True)
