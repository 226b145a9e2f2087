"""The events the plans service publishes, and the schema of each one's data.

Every plan event carries the plan's whole current state (priorities, goals, actions, review
date...), so no consumer needs a second call; ``reason`` and ``changes`` say what this change was.

- ``plan.created``  a draft was recorded
- ``plan.agreed``   the draft was agreed with the person (who agreed, whether the person did)
- ``plan.revised``  the content changed (``changes`` names the fields); a draft edited, an active
  plan revised, goals or actions updated
- ``plan.held``     an active plan was put on hold (``reason``)
- ``plan.resumed``  an on-hold plan became active again
- ``plan.closed``   the plan ended: ``status`` is ``completed`` (closed) or ``revoked``
"""
from __future__ import annotations

from marshmallow import fields

from coproduction.events import PriorityOut, event_type
from coproduction.shapes import TolerantSchema

TYPES = ("plan.created", "plan.agreed", "plan.revised", "plan.held", "plan.resumed", "plan.closed")


class PlanEventData(TolerantSchema):
    """Every plan event carries the plan's current state, so no consumer needs a second call."""

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
    # added after the walking skeleton (fields only ever added within a type)
    status_reason = fields.String(allow_none=True)
    results = fields.List(fields.Dict())
    results_shared_at = fields.String(allow_none=True)
    closed_at = fields.String(allow_none=True)
    created_at = fields.String()
    reason = fields.String(allow_none=True, metadata={"description": "Why this change was made"})
    changes = fields.List(fields.String(), metadata={"description": "The fields this change altered"})


for _type in TYPES:
    event_type(_type)(PlanEventData)

_SAMPLE = {
    "plan_id": "3f0c1d2e-0000-4000-8000-000000000001", "status": "active", "status_reason": None,
    "conditions": ["type 2 diabetes"],
    "priorities": [{"id": "5b7a0f0e-0000-4000-8000-000000000002", "text": "Walk my grandson to school",
                    "category": "physical_activity", "expressed_by": "person", "rank": 1,
                    "status": "active", "recorded_at": "2026-11-25T10:00:00Z"}],
    "goals": [{"id": "6c8b1f1f-0000-4000-8000-000000000003", "description": "Weight 105 kg",
               "target": {"measure": "body weight", "value": 105.0, "unit": "kg", "due": "2027-09-30"},
               "lifecycle_status": "active", "achievement_status": "in-progress",
               "priority_ids": ["5b7a0f0e-0000-4000-8000-000000000002"], "status_date": "2026-11-25",
               "achieved_on": None}],
    "actions": [{"id": "7d9c2a2a-0000-4000-8000-000000000004", "text": "Walk 15 minutes after lunch",
                 "owner": "person", "due": None, "status": "to_do", "completed_on": None}],
    "next_review_date": "2027-03-14", "care_coordinator": None,
    "results": [{"id": "8e0d3b3b-0000-4000-8000-000000000005", "name": "HbA1c", "value": "58",
                 "unit": "mmol/mol", "taken_on": "2026-11-01"}],
    "results_shared_at": "2026-11-18T09:00:00Z",
    "agreed_by": "Dr A Patel", "person_agreed": True, "agreed_at": "2026-11-25T10:00:00Z",
    "closed_at": None, "created_at": "2026-11-25T09:30:00Z", "reason": None, "changes": [],
    "changed_by": {"client": "gp-1", "org": "A81001", "role": "gp"},
}

#: one sample payload per type: contract tests load each through every consumer's reader
SAMPLES = {
    "plan.created": dict(_SAMPLE, status="draft", agreed_by=None, person_agreed=None, agreed_at=None),
    "plan.agreed": dict(_SAMPLE),
    "plan.revised": dict(_SAMPLE, changes=["goals", "next_review_date"], reason="Review at 3 months"),
    "plan.held": dict(_SAMPLE, status="on_hold", status_reason="Admitted to hospital",
                      reason="Admitted to hospital", changes=["status"]),
    "plan.resumed": dict(_SAMPLE, changes=["status"]),
    "plan.closed": dict(_SAMPLE, status="completed", closed_at="2027-11-25T10:00:00Z", changes=["status"]),
}
