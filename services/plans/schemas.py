"""What the plans API accepts and returns."""
from __future__ import annotations

import re
from datetime import date, timedelta

from marshmallow import Schema, ValidationError, fields, validate, validates_schema

from coproduction.events import PrioritySchema, StrictBoolean, now
from coproduction.nhs_number import NHSNumber
from coproduction.paging import limit_field, page_schema
from coproduction.shapes import StrictSchema, TolerantSchema

#: FHIR R4 Goal.lifecycleStatus and Goal.achievementStatus codes, used as they are
GOAL_LIFECYCLE = ("proposed", "planned", "accepted", "active", "on-hold", "completed", "cancelled",
                  "entered-in-error", "rejected")
GOAL_ACHIEVEMENT = ("in-progress", "improving", "worsening", "no-change", "achieved", "sustaining",
                    "not-achieved", "no-progress", "not-attainable")
ACTION_OWNERS = ("person", "practice", "community")
ACTION_STATUSES = ("to_do", "in_progress", "done", "cancelled")
PLAN_STATUSES = ("draft", "active", "on_hold", "completed", "revoked")
#: how far ahead of our clock a results_shared_at may be (clock skew between systems)
CLOCK_SKEW = timedelta(minutes=5)

_CONTROL = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]")


def _plain_text(value: str) -> None:
    """Text a person or a GP system can read back: not blank, no control characters (FHIR agrees)."""
    if not value.strip():
        raise ValidationError("Cannot be blank.")
    if _CONTROL.search(value):
        raise ValidationError("Cannot contain control characters.")


Text = lambda n=500, **kw: fields.String(validate=[validate.Length(min=1, max=n), _plain_text], **kw)  # noqa: E731


class PlanPrioritySchema(PrioritySchema):
    """The shared Priority shape, with the text held to the same standard as the rest of a plan."""

    text = Text(500, required=True)


def _not_in_future(value) -> None:
    if value > now() + CLOCK_SKEW:
        raise ValidationError("Cannot be in the future: results are shared before the conversation.")


def _something_to_change(original) -> None:
    """A change must send some field besides ``reason`` (bad or unknown ones are named on their own)."""
    if isinstance(original, dict) and not set(original) - {"reason"}:
        raise ValidationError("Send at least one field to change.", "body")


def _as_date(value) -> date | None:
    if isinstance(value, date):
        return value
    if isinstance(value, str):
        try:
            return date.fromisoformat(value)
        except ValueError:
            return None
    return None


def date_errors(data: dict, plan_date: date) -> dict:
    """Dates that fall before the plan itself, as marshmallow-shaped errors (empty when none).

    Works on loaded data and on the raw body alike (the raw body keeps list indices right
    when some other item of the list is invalid).
    """
    errors: dict = {}
    review = _as_date(data.get("next_review_date"))
    if review is not None and review < plan_date:
        errors["next_review_date"] = [f"The review date cannot be before the plan ({plan_date.isoformat()})."]
    goals = data.get("goals")
    for i, goal in enumerate(goals if isinstance(goals, list) else []):
        target = goal.get("target") if isinstance(goal, dict) else None
        due = _as_date(target.get("due")) if isinstance(target, dict) else None
        if due is not None and due < plan_date:
            errors.setdefault("goals", {})[i] = {"target": {"due": [
                f"A goal cannot be due before the plan ({plan_date.isoformat()})."]}}
    return errors


class TargetSchema(StrictSchema):
    measure = Text(200, required=True)
    value = fields.Float(allow_none=True, load_default=None, allow_nan=False)
    unit = Text(50, load_default=None, allow_none=True)
    due = fields.Date(load_default=None, allow_none=True)


class GoalSchema(StrictSchema):
    """A goal, as FHIR R4 Goal has it: lifecycle and achievement status use FHIR's codes."""

    id = fields.UUID(load_default=None)
    description = Text(500, required=True)
    target = fields.Nested(TargetSchema, load_default=None, allow_none=True)
    lifecycle_status = fields.String(load_default="active", validate=validate.OneOf(GOAL_LIFECYCLE))
    achievement_status = fields.String(load_default="in-progress", validate=validate.OneOf(GOAL_ACHIEVEMENT))
    priority_ids = fields.List(fields.UUID(), load_default=list, validate=validate.Length(max=20))
    # set by the service when the statuses change; accepted (and recomputed) so a GET body can be sent back
    status_date = fields.Date(load_default=None, allow_none=True)
    achieved_on = fields.Date(load_default=None, allow_none=True)


class ActionSchema(StrictSchema):
    id = fields.UUID(load_default=None)
    text = Text(500, required=True)
    owner = fields.String(required=True, validate=validate.OneOf(ACTION_OWNERS))
    due = fields.Date(load_default=None, allow_none=True)
    status = fields.String(load_default="to_do", validate=validate.OneOf(ACTION_STATUSES))
    completed_on = fields.Date(load_default=None, allow_none=True)  # set by the service


class ResultSchema(StrictSchema):
    """A result shared with the person before the care planning conversation (HbA1c, BP...)."""

    id = fields.UUID(load_default=None)
    name = Text(200, required=True)
    value = Text(100, required=True)
    unit = Text(50, load_default=None, allow_none=True)
    taken_on = fields.Date(load_default=None, allow_none=True)


class PlanCreateSchema(StrictSchema):
    nhs_number = NHSNumber(required=True)
    conditions = fields.List(Text(200), load_default=list, validate=validate.Length(max=50))
    priorities = fields.List(fields.Nested(PlanPrioritySchema), load_default=list, validate=validate.Length(max=50))
    goals = fields.List(fields.Nested(GoalSchema), load_default=list, validate=validate.Length(max=50))
    actions = fields.List(fields.Nested(ActionSchema), load_default=list, validate=validate.Length(max=100))
    next_review_date = fields.Date(load_default=None, allow_none=True)
    results = fields.List(fields.Nested(ResultSchema), load_default=list, validate=validate.Length(max=100))
    results_shared_at = fields.AwareDateTime(load_default=None, allow_none=True, validate=_not_in_future)
    care_coordinator = Text(200, load_default=None, allow_none=True)

    @validates_schema(skip_on_field_errors=False, pass_original=True)
    def _dates(self, data, original, **kwargs):
        # runs even when other fields are bad, so one 422 names every bad field
        errors = date_errors(original if isinstance(original, dict) else data, now().date())
        if errors:
            raise ValidationError(errors)


class PlanPatchSchema(StrictSchema):
    """A revision: only the fields sent change; lists are replaced whole (items keep their ids)."""

    conditions = fields.List(Text(200), validate=validate.Length(max=50))
    priorities = fields.List(fields.Nested(PlanPrioritySchema), validate=validate.Length(max=50))
    goals = fields.List(fields.Nested(GoalSchema), validate=validate.Length(max=50))
    actions = fields.List(fields.Nested(ActionSchema), validate=validate.Length(max=100))
    next_review_date = fields.Date(allow_none=True)
    results = fields.List(fields.Nested(ResultSchema), validate=validate.Length(max=100))
    results_shared_at = fields.AwareDateTime(allow_none=True, validate=_not_in_future)
    care_coordinator = Text(200, allow_none=True)
    reason = Text(500, load_default=None, allow_none=True,
                  metadata={"description": "Why the plan was revised (kept with the version)"})

    @validates_schema(skip_on_field_errors=False, pass_original=True)
    def _something(self, data, original, **kwargs):
        _something_to_change(original)


class GoalPatchSchema(StrictSchema):
    description = Text(500)
    target = fields.Nested(TargetSchema, allow_none=True)
    lifecycle_status = fields.String(validate=validate.OneOf(GOAL_LIFECYCLE))
    achievement_status = fields.String(validate=validate.OneOf(GOAL_ACHIEVEMENT))
    priority_ids = fields.List(fields.UUID(), validate=validate.Length(max=20))
    reason = Text(500, load_default=None, allow_none=True)

    @validates_schema(skip_on_field_errors=False, pass_original=True)
    def _something(self, data, original, **kwargs):
        _something_to_change(original)


class ActionPatchSchema(StrictSchema):
    text = Text(500)
    owner = fields.String(validate=validate.OneOf(ACTION_OWNERS))
    due = fields.Date(allow_none=True)
    status = fields.String(validate=validate.OneOf(ACTION_STATUSES))
    reason = Text(500, load_default=None, allow_none=True)

    @validates_schema(skip_on_field_errors=False, pass_original=True)
    def _something(self, data, original, **kwargs):
        _something_to_change(original)


class AgreeSchema(StrictSchema):
    agreed_by = Text(200, required=True, metadata={"description": "The professional who agreed the plan"})
    person_agreed = StrictBoolean(required=True)


class ReasonSchema(StrictSchema):
    """Body of resume and close: an optional reason."""

    reason = Text(500, load_default=None, allow_none=True)


class RequiredReasonSchema(StrictSchema):
    """Body of hold and revoke: the reason is required."""

    reason = Text(500, required=True)


class PlanSchema(TolerantSchema):
    """A plan as returned (documentation; responses are built by ``api.plan_json``)."""

    id = fields.String()
    version = fields.Integer()
    status = fields.String(validate=validate.OneOf(PLAN_STATUSES))
    status_reason = fields.String(allow_none=True)
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
    closed_at = fields.String(allow_none=True)
    created_by = fields.String()
    updated_by = fields.String(allow_none=True)
    created_at = fields.String()
    updated_at = fields.String()


class PlanListQuery(Schema):
    nhs_number = NHSNumber(required=True)
    status = fields.String(validate=validate.OneOf(PLAN_STATUSES))
    limit = limit_field(500)
    cursor = fields.String(load_default=None, validate=validate.Length(max=200))


PlanListSchema = page_schema("PlanListSchema", PlanSchema, nhs_number=fields.String())


class VersionSummarySchema(Schema):
    version = fields.Integer()
    event_type = fields.String()
    status = fields.String()
    changes = fields.List(fields.String())
    reason = fields.String(allow_none=True)
    changed_by = fields.Dict()
    at = fields.String()


class VersionListSchema(Schema):
    plan_id = fields.String()
    nhs_number = fields.String()
    current_version = fields.Integer()
    items = fields.List(fields.Nested(VersionSummarySchema))
