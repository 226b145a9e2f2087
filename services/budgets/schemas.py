"""What the budgets API accepts and returns.

Money is integer pence (``strict``: 12.5 or "100" are refused) with ``currency: "GBP"``. The rules
a budget's money must keep (holdings add up, nothing excluded is bought, a budget belongs to a
plan) are named in each 422 message as ``(rule: …)`` so a caller can tell them apart.
"""
from __future__ import annotations

from marshmallow import RAISE, Schema, ValidationError, fields, validate, validates_schema

from coproduction.events import PrioritySchema, StrictBoolean
from coproduction.nhs_number import NHSNumber
from coproduction.paging import limit_field, page_schema
from coproduction.shapes import StrictSchema, TolerantSchema

from .domain import (BUDGET_STATUSES, CATEGORIES, CURRENCY, EXCLUDED_CATEGORIES, FREQUENCIES,
                     HOLDER_RELATIONSHIPS, HOLDING_TYPES, KINDS, RULE_EXCLUDED, RULE_PLAN, RULE_PRIORITIES,
                     SECTORS, holdings_message)

Text = lambda n=500, **kw: fields.String(validate=validate.Length(min=1, max=n), **kw)  # noqa: E731
MAX_PENCE = 100_000_000  # £1,000,000 a year: anything above is a typing error
Pence = lambda **kw: fields.Integer(strict=True, validate=validate.Range(min=0, max=MAX_PENCE), **kw)  # noqa: E731

PLAN_REQUIRED = (f"A personal health budget is agreed against the person's care and support plan: "
                 f"give the plan's id (rule: {RULE_PLAN}).")


def excluded_message(category: str) -> str:
    return (f"A personal health budget can never pay for {EXCLUDED_CATEGORIES[category]} "
            f"(rule: {RULE_EXCLUDED}; refused: {', '.join(EXCLUDED_CATEGORIES)}).")


def check_category(value: str) -> None:
    if value in EXCLUDED_CATEGORIES:
        raise ValidationError(excluded_message(value))
    if value not in CATEGORIES:
        raise ValidationError(f"Must be one of: {', '.join(CATEGORIES)}.")


class HoldingSchema(StrictSchema):
    """Where part of the money is held: by the NHS (notional), a third party, or the person."""

    type = fields.String(required=True, validate=validate.OneOf(HOLDING_TYPES))
    pence = Pence(required=True)
    managed_by = Text(200, load_default=None, allow_none=True,
                      metadata={"description": "Who manages it, e.g. 'ICB', 'Independent user trust'"})


class HolderSchema(StrictSchema):
    """Who holds the budget: the person, or someone on their behalf."""

    relationship = fields.String(load_default="person", validate=validate.OneOf(HOLDER_RELATIONSHIPS))
    name = Text(200, load_default=None, allow_none=True)
    organisation = Text(200, load_default=None, allow_none=True)
    contact = Text(200, load_default=None, allow_none=True)


def _line_item_fields(required: bool) -> dict:
    """The fields of a line item; for a PATCH all optional, and an absent field stays absent."""
    req = {"required": True} if required else {}

    def opt(default=None) -> dict:
        return {"load_default": default} if required else {}

    return {
        "description": Text(500, **req),
        "category": fields.String(validate=check_category, **req, metadata={"enum": list(CATEGORIES)}),
        "sector": fields.String(validate=validate.OneOf(SECTORS), **req),
        "pence": fields.Integer(strict=True, validate=validate.Range(min=1, max=MAX_PENCE), **req,
                                metadata={"description": "Pence each time (see frequency)"}),
        "frequency": fields.String(validate=validate.OneOf(tuple(FREQUENCIES)), **opt("annual")),
        "effective_from": fields.Date(allow_none=True, **opt()),
        "effective_to": fields.Date(allow_none=True, **opt()),
        "priority_ids": fields.List(fields.UUID(), validate=validate.Length(max=20), **opt(list),
                                    metadata={"description": "The budget's priorities this serves"}),
        "provider": Text(200, allow_none=True, **opt()),
        "paid_from": fields.String(validate=validate.OneOf(HOLDING_TYPES), allow_none=True, **opt(),
                                   metadata={"description": "Which holding pays it"}),
    }


class DatesInOrder(StrictSchema):
    """A body whose ``effective_to``, if sent, is not before its ``effective_from``."""

    @validates_schema
    def _dates(self, data, **kwargs):
        start, end = data.get("effective_from"), data.get("effective_to")
        if start and end and end < start:
            raise ValidationError("effective_to cannot be before effective_from.", "effective_to")


class LineItemSchema(Schema.from_dict(_line_item_fields(True)), DatesInOrder):
    class Meta:
        unknown = RAISE

    id = fields.UUID(load_default=None)


class ChangeSchema(DatesInOrder):
    """Why a change is made and from when it takes effect (optionally until when)."""

    reason = Text(1000, load_default=None, allow_none=True,
                  metadata={"description": "Required once the budget is agreed"})
    effective_from = fields.Date(load_default=None, allow_none=True,
                                 metadata={"description": "Default: today"})
    effective_to = fields.Date(load_default=None, allow_none=True,
                               metadata={"description": "For a temporary change"})


class LineItemCreateSchema(LineItemSchema):
    change = fields.Nested(ChangeSchema, load_default=dict)


class LineItemPatchSchema(Schema.from_dict(_line_item_fields(False))):
    class Meta:
        unknown = RAISE

    change = fields.Nested(ChangeSchema, load_default=dict)

    @validates_schema
    def _something(self, data, **kwargs):
        if not set(data) - {"change"}:
            raise ValidationError("Nothing to change: give at least one field of the line item.")


class BudgetCreateSchema(StrictSchema):
    nhs_number = NHSNumber(required=True)
    plan_id = fields.UUID(required=True, error_messages={
        "required": PLAN_REQUIRED, "null": PLAN_REQUIRED,
        "invalid_uuid": f"Not a valid plan id (a UUID). {PLAN_REQUIRED}"})
    kind = fields.String(load_default="personal_health_budget", validate=validate.OneOf(KINDS))
    annual_pence = fields.Integer(required=True, strict=True, validate=validate.Range(min=1, max=MAX_PENCE))
    currency = fields.String(load_default=CURRENCY, validate=validate.Equal(
        CURRENCY, error="Budgets are in pounds sterling: currency must be GBP (amounts in pence)."))
    holdings = fields.List(fields.Nested(HoldingSchema), required=True, validate=validate.Length(min=1, max=10))
    priorities = fields.List(fields.Nested(PrioritySchema), load_default=list, validate=validate.Length(max=50))
    line_items = fields.List(fields.Nested(LineItemSchema), load_default=list, validate=validate.Length(max=200))
    holder = fields.Nested(HolderSchema, load_default=None, allow_none=True)
    care_coordinator = Text(200, load_default=None, allow_none=True)
    next_review_date = fields.Date(load_default=None, allow_none=True)

    @validates_schema(skip_on_field_errors=False)  # name every broken rule at once
    def _money(self, data, **kwargs):
        holdings, annual = data.get("holdings"), data.get("annual_pence")
        if holdings is None or annual is None:
            return
        if not all(isinstance(h, dict) and "pence" in h and "type" in h for h in holdings):
            return  # a holding that did not load is named by its own field error; nothing to add up
        if sum(h["pence"] for h in holdings) != annual:
            raise ValidationError(holdings_message(holdings, annual), "holdings")

    @validates_schema(skip_on_field_errors=False)  # name every broken rule at once
    def _served_priorities(self, data, **kwargs):
        known = {p["id"] for p in data.get("priorities") or [] if p.get("id")}
        errors = {}
        for n, item in enumerate(data.get("line_items") or []):
            unknown = [str(p) for p in item.get("priority_ids") or [] if p not in known]
            if unknown:
                errors[f"line_items.{n}.priority_ids"] = [
                    f"Not among this budget's priorities: {', '.join(unknown)} (rule: {RULE_PRIORITIES})."]
        if errors:
            raise ValidationError(errors)


class BudgetPatchSchema(StrictSchema):
    plan_id = fields.UUID(error_messages={"null": PLAN_REQUIRED})
    kind = fields.String(validate=validate.OneOf(KINDS))
    annual_pence = fields.Integer(strict=True, validate=validate.Range(min=1, max=MAX_PENCE))
    holdings = fields.List(fields.Nested(HoldingSchema), validate=validate.Length(min=1, max=10))
    priorities = fields.List(fields.Nested(PrioritySchema), validate=validate.Length(max=50))
    holder = fields.Nested(HolderSchema, allow_none=True)
    care_coordinator = Text(200, allow_none=True)
    next_review_date = fields.Date(allow_none=True)
    change = fields.Nested(ChangeSchema, load_default=dict)

    @validates_schema
    def _something(self, data, **kwargs):
        if not set(data) - {"change"}:
            raise ValidationError("Nothing to change: give at least one field of the budget.")


class StartPlanningSchema(StrictSchema):
    care_coordinator = Text(200, load_default=None, allow_none=True)
    note = Text(1000, load_default=None, allow_none=True)


class AgreeSchema(StrictSchema):
    agreed_by = Text(200, required=True, metadata={"description": "The professional who agreed the budget"})
    person_agreed = StrictBoolean(required=True, validate=validate.Equal(
        True, error="A personal health budget is agreed with the person (or their representative): "
                    "person_agreed must be true (rule: agreed_with_person)."))
    next_review_date = fields.Date(load_default=None, allow_none=True)


class ActivateSchema(StrictSchema):
    start_date = fields.Date(load_default=None, allow_none=True, metadata={"description": "Default: today"})


class ReviewSchema(StrictSchema):
    action = fields.String(required=True, validate=validate.OneOf(("start", "complete")),
                           metadata={"description": "start: active → under_review; complete: back to active"})
    reason = Text(1000, load_default=None, allow_none=True, metadata={"description": "Why (to start)"})
    outcome = Text(2000, load_default=None, allow_none=True, metadata={"description": "What was decided"})
    next_review_date = fields.Date(load_default=None, allow_none=True)

    @validates_schema
    def _needs(self, data, **kwargs):
        if data.get("action") == "start" and not data.get("reason"):
            raise ValidationError("Say why the budget is being reviewed.", "reason")
        if data.get("action") == "complete" and not data.get("outcome"):
            raise ValidationError("Record the outcome of the review.", "outcome")


class SuspendSchema(DatesInOrder):
    reason = Text(1000, required=True)
    effective_from = fields.Date(load_default=None, allow_none=True, metadata={"description": "Default: today"})
    effective_to = fields.Date(load_default=None, allow_none=True,
                               metadata={"description": "When it is expected to resume, if known"})


class ResumeSchema(StrictSchema):
    reason = Text(1000, load_default=None, allow_none=True)
    effective_from = fields.Date(load_default=None, allow_none=True)


class EndSchema(StrictSchema):
    reason = Text(1000, required=True)
    effective_from = fields.Date(load_default=None, allow_none=True, metadata={"description": "Default: today"})


class ChangeQuery(StrictSchema):
    """The change's reason and dates, for DELETE (which has no body)."""

    reason = Text(1000, load_default=None)
    effective_from = fields.Date(load_default=None)
    effective_to = fields.Date(load_default=None)


class BudgetSchema(TolerantSchema):
    """A budget as returned (documentation; responses are built by ``handlers.budget_json``)."""

    id = fields.String()
    version = fields.Integer()
    status = fields.String(validate=validate.OneOf(BUDGET_STATUSES))
    nhs_number = fields.String()
    plan_id = fields.String()
    kind = fields.String()
    annual_pence = fields.Integer()
    currency = fields.String()
    holdings = fields.List(fields.Dict())
    priorities = fields.List(fields.Dict())
    line_items = fields.List(fields.Dict())
    allocated_pence = fields.Integer(metadata={"description": "What the line items cost over a year"})
    unallocated_pence = fields.Integer()
    holder = fields.Dict()
    care_coordinator = fields.String(allow_none=True)
    next_review_date = fields.String(allow_none=True)
    agreed_by = fields.String(allow_none=True)
    person_agreed = fields.Boolean(allow_none=True)
    agreed_at = fields.String(allow_none=True)
    started_on = fields.String(allow_none=True)
    review = fields.Dict(allow_none=True)
    suspension = fields.Dict(allow_none=True)
    ended = fields.Dict(allow_none=True)
    created_at = fields.String()
    updated_at = fields.String()


class BudgetListQuery(StrictSchema):
    nhs_number = NHSNumber(required=True)
    plan_id = fields.UUID(load_default=None)
    status = fields.String(load_default=None, validate=validate.OneOf(BUDGET_STATUSES))
    limit = limit_field(200)
    cursor = fields.String(load_default=None, validate=validate.Length(max=500))


BudgetListSchema = page_schema("BudgetListSchema", BudgetSchema)


class LineItemListSchema(Schema):
    budget_id = fields.String()
    nhs_number = fields.String()
    version = fields.Integer()
    items = fields.List(fields.Dict())


class ChangeHistorySchema(Schema):
    budget_id = fields.String()
    nhs_number = fields.String()
    items = fields.List(fields.Dict())
