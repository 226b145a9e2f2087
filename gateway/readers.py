"""The gateway's own tolerant readers of every event type it consumes.

Consumers own their readers: unknown fields are ignored, missing required ones make the event
invalid (it goes to the dead letters with the reason). Contract tests load every producer's
SAMPLE through these readers.
"""
from __future__ import annotations

from marshmallow import EXCLUDE, Schema, fields, post_load


def optional(field: type[fields.Field] = fields.String, **options) -> fields.Field:
    """A field an event may leave out or send as null: read as None."""
    return field(load_default=None, allow_none=True, **options)


class Reader(Schema):
    class Meta:
        unknown = EXCLUDE


class PriorityIn(Reader):
    id = fields.String(required=True)
    text = fields.String(required=True)
    category = fields.String(required=True)
    expressed_by = fields.String(load_default="person")
    rank = optional(fields.Integer)
    status = fields.String(load_default="active")
    recorded_at = fields.String(load_default="")


class Tolerant(Reader):
    priorities = fields.List(fields.Nested(PriorityIn), required=True)


class AgreedIn(Tolerant):
    """What a plan and a budget both carry: who agreed it with the person, and its next review."""

    care_coordinator = optional()
    next_review_date = optional()
    agreed_by = optional()
    person_agreed = optional(fields.Boolean)
    agreed_at = optional()


class PlanIn(AgreedIn):
    plan_id = fields.String(required=True)
    status = fields.String(required=True)
    conditions = fields.List(fields.String(), load_default=list)
    goals = fields.List(fields.Dict(), load_default=list)
    actions = fields.List(fields.Dict(), load_default=list)
    status_reason = optional()
    results = fields.List(fields.Dict(), load_default=list)
    results_shared_at = optional()
    closed_at = optional()
    created_at = optional()
    reason = optional()
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
    setting = optional()
    encounter_id = optional()
    question = fields.String(load_default="", allow_none=True)
    options = fields.List(fields.Dict(), load_default=list)
    decision_aids = fields.List(fields.Dict(), load_default=list)
    lead_clinician = optional()
    outcome = optional(fields.Dict)
    deferral = optional(fields.Dict)
    follow_up = fields.Dict(load_default=dict, allow_none=True)
    supersedes = optional()
    superseded_by = optional()
    supersede_reason = optional()
    opened_at = optional()


READERS.update({t: ("decisions", "decision", DecisionIn)
                for t in ("decision.opened", "decision.updated", "decision.recorded", "decision.deferred",
                          "decision.followed-up", "decision.superseded")})


# -- groups -------------------------------------------------------------------------------------
class AttendanceIn(Reader):
    session_no = fields.Integer(required=True)
    attended = fields.Boolean(required=True)
    recorded_at = optional()


class EnrolmentIn(Tolerant):
    """One person's place on a self-management course (kind "enrolment")."""

    enrolment_id = fields.String(required=True)
    course_id = fields.String(required=True)
    status = fields.String(required=True)
    title = optional()
    programme = optional()
    starts_on = optional()
    sessions = optional(fields.Integer)
    session_minutes = optional(fields.Integer)
    completion_min_sessions = optional(fields.Integer)
    course_status = optional()
    referral_source = optional()
    attendance = fields.List(fields.Nested(AttendanceIn), load_default=list)
    sessions_attended = optional(fields.Integer)
    action_plans = fields.List(fields.Dict(), load_default=list)
    reason = optional()
    withdrawn_at = optional()
    completed_at = optional()

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
class BudgetIn(AgreedIn):
    """A personal health budget (kind "budget"): its money, what it pays for, and its last change."""

    budget_id = fields.String(required=True)
    status = fields.String(required=True)
    plan_id = optional()
    kind = fields.String(load_default="personal_health_budget", allow_none=True)
    annual_pence = optional(fields.Integer)
    currency = fields.String(load_default="GBP", allow_none=True)
    allocated_pence = optional(fields.Integer)
    holdings = fields.List(fields.Dict(), load_default=list)
    line_items = fields.List(fields.Dict(), load_default=list)
    holder = fields.Dict(load_default=dict, allow_none=True)
    started_on = optional()
    review = optional(fields.Dict)
    suspension = optional(fields.Dict)
    ended = optional(fields.Dict)
    last_change = optional(fields.Dict, data_key="change")


READERS.update({t: ("budgets", "budget", BudgetIn)
                for t in ("budget.created", "budget.planning-started", "budget.agreed", "budget.activated",
                          "budget.changed", "budget.review-started", "budget.reviewed", "budget.suspended",
                          "budget.resumed", "budget.ended")})
