"""The events the budgets service publishes, and the schema of each one's data.

Every budget event carries the budget's whole current state (priorities, holdings, line items,
holder, status) and a ``change`` saying what this event changed: each field from → to, line
items added / removed / changed, the reason, and from when (and until when) it takes effect.
"""
from __future__ import annotations

from marshmallow import fields, validate

from coproduction.events import PriorityOut, event_type
from coproduction.shapes import TolerantSchema

from .domain import BUDGET_STATUSES, CURRENCY

TYPES = ("budget.created", "budget.planning-started", "budget.agreed", "budget.activated",
         "budget.changed", "budget.review-started", "budget.reviewed", "budget.suspended",
         "budget.resumed", "budget.ended")


class FieldChange(TolerantSchema):
    field = fields.String(required=True)
    from_ = fields.Raw(data_key="from", allow_none=True, required=True)
    to = fields.Raw(allow_none=True, required=True)


class ItemChange(TolerantSchema):
    id = fields.String(required=True)
    description = fields.String(required=True)
    fields_ = fields.List(fields.Nested(FieldChange), data_key="fields", required=True)


class LineItemChanges(TolerantSchema):
    added = fields.List(fields.Dict(), required=True)
    removed = fields.List(fields.Dict(), required=True)
    changed = fields.List(fields.Nested(ItemChange), required=True)


class Change(TolerantSchema):
    """What one event changed."""

    summary = fields.String(required=True)
    fields_ = fields.List(fields.Nested(FieldChange), data_key="fields", required=True)
    line_items = fields.Nested(LineItemChanges, required=True)
    reason = fields.String(allow_none=True, required=True)
    effective_from = fields.String(required=True)
    effective_to = fields.String(allow_none=True, required=True)


class BudgetEventData(TolerantSchema):
    """Every budget event carries the budget's current state, so no consumer needs a second call."""

    budget_id = fields.String(required=True)
    plan_id = fields.String(required=True)
    kind = fields.String(required=True)
    status = fields.String(required=True, validate=validate.OneOf(BUDGET_STATUSES))
    annual_pence = fields.Integer(required=True, strict=True)
    currency = fields.String(required=True, validate=validate.Equal(CURRENCY))
    allocated_pence = fields.Integer(required=True, strict=True)
    holdings = fields.List(fields.Dict(), required=True)
    line_items = fields.List(fields.Dict(), required=True)
    priorities = fields.List(fields.Nested(PriorityOut), required=True)
    holder = fields.Dict(required=True)
    care_coordinator = fields.String(allow_none=True)
    next_review_date = fields.String(allow_none=True)
    agreed_by = fields.String(allow_none=True)
    person_agreed = fields.Boolean(allow_none=True)
    agreed_at = fields.String(allow_none=True)
    started_on = fields.String(allow_none=True)
    review = fields.Dict(allow_none=True)
    suspension = fields.Dict(allow_none=True)
    ended = fields.Dict(allow_none=True)
    change = fields.Nested(Change, required=True)
    changed_by = fields.Dict(required=True)


for _type in TYPES:
    event_type(_type)(BudgetEventData)

_PRIORITY = {"id": "5b7a0f0e-0000-4000-8000-000000000002", "text": "Walk my grandson to school",
             "category": "physical_activity", "expressed_by": "person", "rank": 1, "status": "active",
             "recorded_at": "2026-11-25T10:00:00Z"}
_GYM = {"id": "7c1e2a3b-0000-4000-8000-000000000004", "description": "Gym membership",
        "category": "physical_activity", "sector": "private", "pence": 30000, "frequency": "annual",
        "annual_pence": 30000, "effective_from": "2027-01-01", "effective_to": None,
        "priority_ids": [_PRIORITY["id"]], "provider": "Leisure centre", "paid_from": "direct_payment"}
_SWIM = dict(_GYM, id="7c1e2a3b-0000-4000-8000-000000000005", description="Swimming lessons",
             sector="local_authority", pence=1500, frequency="monthly", annual_pence=18000,
             effective_from="2027-02-01", provider="Riverside pool")
_SAMPLE = {
    "budget_id": "9d2b7c4e-0000-4000-8000-000000000003", "plan_id": "3f0c1d2e-0000-4000-8000-000000000001",
    "kind": "personal_health_budget", "status": "active", "annual_pence": 120000, "currency": "GBP",
    "allocated_pence": 48000,
    "holdings": [{"type": "direct_payment", "pence": 60000, "managed_by": None},
                 {"type": "notional", "pence": 60000, "managed_by": "ICB"}],
    "line_items": [_GYM, _SWIM], "priorities": [_PRIORITY],
    "holder": {"relationship": "person", "name": None, "organisation": None, "contact": None},
    "care_coordinator": "Jo Smith", "next_review_date": "2027-06-01",
    "agreed_by": "Jo Smith, PHB lead", "person_agreed": True, "agreed_at": "2026-12-01T10:00:00Z",
    "started_on": "2027-01-01", "review": None, "suspension": None, "ended": None,
    "change": {"summary": "annual_pence 114000 → 120000; holdings changed; line item added: Swimming lessons",
               "fields": [{"field": "annual_pence", "from": 114000, "to": 120000},
                          {"field": "holdings",
                           "from": [{"type": "direct_payment", "pence": 54000, "managed_by": None},
                                    {"type": "notional", "pence": 60000, "managed_by": "ICB"}],
                           "to": [{"type": "direct_payment", "pence": 60000, "managed_by": None},
                                  {"type": "notional", "pence": 60000, "managed_by": "ICB"}]}],
               "line_items": {"added": [_SWIM], "removed": [], "changed": []},
               "reason": "Swimming added at review", "effective_from": "2027-02-01", "effective_to": None},
    "changed_by": {"client": "sc-1", "org": "LA123", "role": "social_care"},
}
_STATUS = {"budget.created": "requested", "budget.planning-started": "planning", "budget.agreed": "agreed",
           "budget.activated": "active", "budget.changed": "active", "budget.review-started": "under_review",
           "budget.reviewed": "active", "budget.suspended": "suspended", "budget.resumed": "active",
           "budget.ended": "ended"}

#: one sample payload per type: contract tests load each through every consumer's reader
SAMPLES = {t: dict(_SAMPLE, status=_STATUS[t]) for t in TYPES}
