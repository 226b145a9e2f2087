"""The gateway's own tolerant readers of every event type it consumes.

Consumers own their readers: unknown fields are ignored, missing required ones make the event
invalid (it goes to the dead letters with the reason). Contract tests load every producer's
SAMPLE through these readers.
"""
from __future__ import annotations

from marshmallow import EXCLUDE, Schema, fields


class PriorityIn(Schema):
    class Meta:
        unknown = EXCLUDE

    id = fields.String(required=True)
    text = fields.String(required=True)
    category = fields.String(required=True)
    expressed_by = fields.String(load_default="person")
    rank = fields.Integer(allow_none=True, load_default=None)
    status = fields.String(load_default="active")
    recorded_at = fields.String(load_default="")


class Tolerant(Schema):
    class Meta:
        unknown = EXCLUDE

    priorities = fields.List(fields.Nested(PriorityIn), required=True)


class PlanIn(Tolerant):
    plan_id = fields.String(required=True)
    status = fields.String(required=True)
    conditions = fields.List(fields.String(), load_default=list)
    goals = fields.List(fields.Dict(), load_default=list)
    actions = fields.List(fields.Dict(), load_default=list)
    next_review_date = fields.String(allow_none=True, load_default=None)
    care_coordinator = fields.String(allow_none=True, load_default=None)
    agreed_by = fields.String(allow_none=True, load_default=None)
    person_agreed = fields.Boolean(allow_none=True, load_default=None)
    agreed_at = fields.String(allow_none=True, load_default=None)
    status_reason = fields.String(allow_none=True, load_default=None)
    results = fields.List(fields.Dict(), load_default=list)
    results_shared_at = fields.String(allow_none=True, load_default=None)
    closed_at = fields.String(allow_none=True, load_default=None)
    created_at = fields.String(allow_none=True, load_default=None)
    reason = fields.String(allow_none=True, load_default=None)
    changes = fields.List(fields.String(), load_default=list)


def binding_keys() -> list[str]:
    prefixes = sorted({t.split(".")[0] for t in READERS})
    return [f"{p}.*" for p in prefixes]


#: event type -> (service, kind of aggregate, reader). Each service's section below adds its types.
READERS: dict[str, tuple[str, str, type[Schema]]] = {}

# -- plans --------------------------------------------------------------------------------------
READERS.update({t: ("plans", "plan", PlanIn)
                for t in ("plan.created", "plan.agreed", "plan.revised", "plan.held", "plan.resumed",
                          "plan.closed")})

# -- decisions ----------------------------------------------------------------------------------
class DecisionIn(Tolerant):
    decision_id = fields.String(required=True)
    status = fields.String(required=True)
    setting = fields.String(load_default=None, allow_none=True)
    encounter_id = fields.String(load_default=None, allow_none=True)
    question = fields.String(load_default="", allow_none=True)
    options = fields.List(fields.Dict(), load_default=list)
    decision_aids = fields.List(fields.Dict(), load_default=list)
    lead_clinician = fields.String(load_default=None, allow_none=True)
    outcome = fields.Dict(load_default=None, allow_none=True)
    deferral = fields.Dict(load_default=None, allow_none=True)
    follow_up = fields.Dict(load_default=dict, allow_none=True)
    supersedes = fields.String(load_default=None, allow_none=True)
    superseded_by = fields.String(load_default=None, allow_none=True)
    supersede_reason = fields.String(load_default=None, allow_none=True)
    opened_at = fields.String(load_default=None, allow_none=True)


READERS.update({t: ("decisions", "decision", DecisionIn)
                for t in ("decision.opened", "decision.updated", "decision.recorded", "decision.deferred",
                          "decision.followed-up", "decision.superseded")})


# -- groups -------------------------------------------------------------------------------------
from marshmallow import post_load  # noqa: E402  (kept in this section)


class AttendanceIn(Schema):
    class Meta:
        unknown = EXCLUDE

    session_no = fields.Integer(required=True)
    attended = fields.Boolean(required=True)
    recorded_at = fields.String(load_default=None, allow_none=True)


class EnrolmentIn(Tolerant):
    """One person's place on a self-management course (kind "enrolment")."""

    enrolment_id = fields.String(required=True)
    course_id = fields.String(required=True)
    status = fields.String(required=True)
    title = fields.String(load_default=None, allow_none=True)
    programme = fields.String(load_default=None, allow_none=True)
    starts_on = fields.String(load_default=None, allow_none=True)
    sessions = fields.Integer(load_default=None, allow_none=True)
    session_minutes = fields.Integer(load_default=None, allow_none=True)
    completion_min_sessions = fields.Integer(load_default=None, allow_none=True)
    course_status = fields.String(load_default=None, allow_none=True)
    referral_source = fields.String(load_default=None, allow_none=True)
    attendance = fields.List(fields.Nested(AttendanceIn), load_default=list)
    sessions_attended = fields.Integer(load_default=None, allow_none=True)
    action_plans = fields.List(fields.Dict(), load_default=list)
    reason = fields.String(load_default=None, allow_none=True)
    withdrawn_at = fields.String(load_default=None, allow_none=True)
    completed_at = fields.String(load_default=None, allow_none=True)

    @post_load
    def _derived(self, data, **kwargs):
        if data["sessions_attended"] is None:
            data["sessions_attended"] = sum(1 for a in data["attendance"] if a["attended"])
        data["in_progress"] = data["status"] in ("referred", "enrolled", "active")
        return data


READERS.update({t: ("groups", "enrolment", EnrolmentIn)
                for t in ("group.referred", "group.enrolled", "group.attended", "group.action-planned",
                          "group.completed", "group.not-completed", "group.withdrawn")})


# -- budgets ------------------------------------------------------------------------------------
class BudgetIn(Tolerant):
    """A personal health budget (kind "budget"): its money, what it pays for, and its last change."""

    budget_id = fields.String(required=True)
    status = fields.String(required=True)
    plan_id = fields.String(load_default=None, allow_none=True)
    kind = fields.String(load_default="personal_health_budget", allow_none=True)
    annual_pence = fields.Integer(load_default=None, allow_none=True)
    currency = fields.String(load_default="GBP", allow_none=True)
    allocated_pence = fields.Integer(load_default=None, allow_none=True)
    holdings = fields.List(fields.Dict(), load_default=list)
    line_items = fields.List(fields.Dict(), load_default=list)
    holder = fields.Dict(load_default=dict, allow_none=True)
    care_coordinator = fields.String(load_default=None, allow_none=True)
    next_review_date = fields.String(load_default=None, allow_none=True)
    agreed_by = fields.String(load_default=None, allow_none=True)
    person_agreed = fields.Boolean(load_default=None, allow_none=True)
    agreed_at = fields.String(load_default=None, allow_none=True)
    started_on = fields.String(load_default=None, allow_none=True)
    review = fields.Dict(load_default=None, allow_none=True)
    suspension = fields.Dict(load_default=None, allow_none=True)
    ended = fields.Dict(load_default=None, allow_none=True)
    last_change = fields.Dict(data_key="change", load_default=None, allow_none=True)


READERS.update({t: ("budgets", "budget", BudgetIn)
                for t in ("budget.created", "budget.planning-started", "budget.agreed", "budget.activated",
                          "budget.changed", "budget.review-started", "budget.reviewed", "budget.suspended",
                          "budget.resumed", "budget.ended")})
