"""Request bodies the tests send again and again: a plan, its agreement, a budget, a course.

Each builder gives the smallest body its callers share; a test adds or replaces fields by keyword,
so what a test sends is still read in the test.
"""
from __future__ import annotations

WALK = "Walk my grandson to school"
AGREEMENT = {"agreed_by": "Dr A Patel", "person_agreed": True}
COURSE = {"programme": "expert_patients", "title": "Living well with diabetes", "sessions": 6,
          "starts_on": "2027-04-09", "capacity": 12, "tutors": [{"name": "Sam Lee", "role": "lay_tutor"}]}


def priority(text: str = WALK, category: str = "physical_activity", **fields) -> dict:
    return {"text": text, "category": category, **fields}


def plan_body(nhs: str, *priorities: dict, **fields) -> dict:
    """A care plan for ``nhs`` holding ``priorities`` (walking his grandson to school if none)."""
    return {"nhs_number": nhs, "priorities": list(priorities) or [priority()], **fields}


def notional_budget(nhs: str, plan_id: str, pence: int, **fields) -> dict:
    """A budget for ``plan_id`` held all as a notional budget of ``pence`` a year."""
    return {"nhs_number": nhs, "plan_id": plan_id, "annual_pence": pence,
            "holdings": [{"type": "notional", "pence": pence}], **fields}


def gym_budget(nhs: str, plan_id: str, walk_id: str, *more_priorities: dict, **fields) -> dict:
    """£1,140 a year: £540 as a direct payment that buys a gym membership for the walk (``walk_id``),
    the rest notional."""
    return {
        "nhs_number": nhs, "plan_id": plan_id, "annual_pence": 114000, "currency": "GBP",
        "holdings": [{"type": "direct_payment", "pence": 54000}, {"type": "notional", "pence": 60000}],
        "priorities": [priority(id=walk_id, expressed_by="person", rank=1), *more_priorities],
        "line_items": [{"description": "Gym membership", "category": "physical_activity", "sector": "private",
                        "pence": 30000, "frequency": "annual", "priority_ids": [walk_id],
                        "paid_from": "direct_payment"}],
        "holder": {"relationship": "person"},
        **fields,
    }
