"""The events the decisions service publishes, and the schema of each one's data.

Every event carries the decision's whole current state, including the person's current
``priorities``, so no consumer needs a second call.
"""
from __future__ import annotations

from marshmallow import fields, validate

from coproduction.events import PriorityOut, event_type
from coproduction.shapes import TolerantSchema

TYPES = ("decision.opened", "decision.updated", "decision.recorded", "decision.deferred",
         "decision.followed-up", "decision.superseded")


class DecisionEventData(TolerantSchema):
    decision_id = fields.String(required=True)
    status = fields.String(required=True, validate=validate.OneOf(("opened", "recorded", "deferred", "superseded")))
    setting = fields.String(required=True)
    encounter_id = fields.String(allow_none=True, required=True)
    question = fields.String(required=True)
    priorities = fields.List(fields.Nested(PriorityOut), required=True)
    options = fields.List(fields.Dict(), required=True)
    decision_aids = fields.List(fields.Dict(), required=True)
    lead_clinician = fields.String(allow_none=True)
    outcome = fields.Dict(allow_none=True, required=True)
    deferral = fields.Dict(allow_none=True, required=True)
    follow_up = fields.Dict(required=True)
    supersedes = fields.String(allow_none=True, required=True)
    superseded_by = fields.String(allow_none=True, required=True)
    supersede_reason = fields.String(allow_none=True)
    opened_at = fields.String(required=True)
    changed_by = fields.Dict(required=True)


for _type in TYPES:
    event_type(_type)(DecisionEventData)

_OPTIONS = [
    {"id": "7c1e0a9b-0000-4000-8000-000000000011", "label": "Start insulin", "description": None,
     "is_no_change": False, "benefits": ["Brings blood glucose down within days"],
     "risks": [{"text": "a hypo needing help from someone else", "natural_frequency": "10 in 100",
                "count": 10, "out_of": 100, "timeframe": "in the first year"}],
     "consequences": ["Finger-prick checks before driving"]},
    {"id": "7c1e0a9b-0000-4000-8000-000000000012", "label": "No change until GP review", "description": None,
     "is_no_change": True, "benefits": ["Nothing new to learn while in hospital"],
     "risks": [{"text": "glucose stays high until the review", "natural_frequency": "60 in 100",
                "count": 60, "out_of": 100, "timeframe": None}],
     "consequences": ["GP review within 2 weeks"]},
]
_SAMPLE = {
    "decision_id": "3f0c1d2e-0000-4000-8000-000000000010", "status": "opened", "setting": "inpatient",
    "encounter_id": "ADM-1", "question": "How should we manage his blood glucose?",
    "priorities": [{"id": "5b7a0f0e-0000-4000-8000-000000000002", "text": "Keep driving for work",
                    "category": "work_and_money", "expressed_by": "person", "rank": None,
                    "status": "active", "recorded_at": "2026-11-25T10:00:00Z"}],
    "options": _OPTIONS,
    "decision_aids": [{"title": "Type 2 diabetes: insulin decision aid", "url": None, "format": "leaflet",
                       "source": "NICE"}],
    "lead_clinician": "Dr A Patel", "outcome": None, "deferral": None,
    "follow_up": {"summary_given": None, "summary_given_at": None, "letter_sent": None, "letter_sent_to": None,
                  "letter_sent_at": None, "revisit_by": None, "notes": None},
    "supersedes": None, "superseded_by": None, "supersede_reason": None,
    "opened_at": "2026-11-25T10:00:00Z",
    "changed_by": {"client": "hospital-1", "org": "RX101", "role": "hospital"},
}
_OUTCOME = {"chosen_option_id": _OPTIONS[1]["id"], "chosen_option_label": _OPTIONS[1]["label"],
            "chosen_is_no_change": True, "persons_reason": "Worried about hypos while driving",
            "clinician": "Dr A Patel", "others_involved": [], "recorded_at": "2026-11-25T11:00:00Z"}
_DEFERRAL = {"reason": "Wants to talk it over with his wife", "revisit_by": "2026-12-02",
             "clinician": "Dr A Patel", "deferred_at": "2026-11-25T11:00:00Z"}

#: one sample payload per type: contract tests load each through every consumer's reader
SAMPLES = {
    "decision.opened": _SAMPLE,
    "decision.updated": dict(_SAMPLE),
    "decision.recorded": dict(_SAMPLE, status="recorded", outcome=_OUTCOME),
    "decision.deferred": dict(_SAMPLE, status="deferred", deferral=_DEFERRAL),
    "decision.followed-up": dict(_SAMPLE, status="recorded", outcome=_OUTCOME,
                                 follow_up=dict(_SAMPLE["follow_up"], summary_given=True, letter_sent=True,
                                                letter_sent_to=["person", "GP"], revisit_by="2027-01-15")),
    "decision.superseded": dict(_SAMPLE, status="superseded", outcome=_OUTCOME,
                                superseded_by="3f0c1d2e-0000-4000-8000-000000000020",
                                supersede_reason="Revisited at GP review"),
}
