"""The events the plans service publishes, and the schema of each one's data."""
from __future__ import annotations

from marshmallow import EXCLUDE, Schema, fields

from coproduction.events import PriorityOut, event_type


class PlanEventData(Schema):
    """Every plan event carries the plan's current state, so no consumer needs a second call."""

    class Meta:
        unknown = EXCLUDE

    plan_id = fields.String(required=True)
    status = fields.String(required=True)
    conditions = fields.List(fields.String(), required=True)
    priorities = fields.List(fields.Nested(PriorityOut), required=True)
    goals = fields.List(fields.Dict(), required=True)
    actions = fields.List(fields.Dict(), required=True)
    next_review_date = fields.String(allow_none=True, required=True)
    care_coordinator = fields.String(allow_none=True)
    agreed_by = fields.String(allow_none=True)
    person_agreed = fields.Boolean(allow_none=True)
    agreed_at = fields.String(allow_none=True)
    changed_by = fields.Dict(required=True)


for _type in ("plan.created", "plan.agreed", "plan.revised", "plan.closed"):
    event_type(_type)(PlanEventData)

_SAMPLE = {
    "plan_id": "3f0c1d2e-0000-4000-8000-000000000001", "status": "active",
    "conditions": ["type 2 diabetes"],
    "priorities": [{"id": "5b7a0f0e-0000-4000-8000-000000000002", "text": "Walk my grandson to school",
                    "category": "physical_activity", "expressed_by": "person", "rank": 1,
                    "status": "active", "recorded_at": "2026-11-25T10:00:00Z"}],
    "goals": [], "actions": [], "next_review_date": "2027-03-14", "care_coordinator": None,
    "agreed_by": "Dr A Patel", "person_agreed": True, "agreed_at": "2026-11-25T10:00:00Z",
    "changed_by": {"client": "gp-1", "org": "A81001", "role": "gp"},
}

#: one sample payload per type: contract tests load each through every consumer's reader
SAMPLES = {t: dict(_SAMPLE, status="draft" if t == "plan.created" else _SAMPLE["status"])
           for t in ("plan.created", "plan.agreed", "plan.revised", "plan.closed")}
