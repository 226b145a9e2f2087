"""Personal health budgets: what is stored, and the rules of a budget's life and of its money."""
from __future__ import annotations

from datetime import date, datetime

from sqlalchemy import JSON, Boolean, DateTime, Index, Integer, MetaData, String
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

from coproduction.idempotency import idempotency_table
from coproduction.outbox import outbox_table

Json = JSON().with_variant(JSONB(), "postgresql")

CURRENCY = "GBP"
HOLDING_TYPES = ("notional", "third_party", "direct_payment")
SECTORS = ("nhs", "local_authority", "voluntary", "private")
CATEGORIES = ("personal_assistant", "care_agency", "therapy", "equipment", "physical_activity",
              "weight_management", "transport", "course", "peer_support", "other")
#: what a personal health budget may never buy (NHS England guidance; the Care Act rules agree)
EXCLUDED_CATEGORIES = {
    "alcohol": "alcohol",
    "tobacco": "tobacco",
    "gambling": "gambling",
    "debt_repayment": "repaying debts",
    "illegal": "anything illegal",
    "emergency_care": "emergency or unplanned care (it stays with the NHS)",
    "gp_services": "GP (primary medical) services (they stay with the NHS)",
}
FREQUENCIES = {"one_off": 1, "weekly": 52, "fortnightly": 26, "four_weekly": 13, "monthly": 12,
               "quarterly": 4, "annual": 1}
KINDS = ("personal_health_budget", "personal_budget", "integrated_personal_budget")
HOLDER_RELATIONSHIPS = ("person", "representative", "nominee", "deputy", "organisation")
BUDGET_STATUSES = ("requested", "planning", "agreed", "active", "under_review", "suspended", "ended")
#: states in which the budget has been agreed with the person: a change then needs a reason
AGREED_STATES = ("agreed", "active", "under_review", "suspended")

#: state -> {action: next state}
TRANSITIONS = {
    "requested": {"start_planning": "planning", "end": "ended"},
    "planning": {"agree": "agreed", "end": "ended"},
    "agreed": {"activate": "active", "end": "ended"},
    "active": {"start_review": "under_review", "suspend": "suspended", "end": "ended"},
    "under_review": {"complete_review": "active", "suspend": "suspended", "end": "ended"},
    "suspended": {"resume": "active", "end": "ended"},
    "ended": {},
}
#: why an action is refused in a state where a reader might expect it to work
REASONS = {
    ("requested", "agree"): "A budget is agreed at the end of support planning: start planning first "
                            "(POST /v1/budgets/{id}/start-planning).",
    ("agreed", "suspend"): "Only a budget that is being spent (active or under review) can be suspended.",
    ("planning", "suspend"): "Only a budget that is being spent (active or under review) can be suspended.",
    ("requested", "suspend"): "Only a budget that is being spent (active or under review) can be suspended.",
    ("under_review", "resume"): "The budget is under review, not suspended; complete the review instead.",
    ("*", "resume"): "The budget is not suspended, so there is nothing to resume.",
    ("active", "complete_review"): "The budget is not under review; start a review first.",
    ("under_review", "start_review"): "The budget is already under review.",
    ("suspended", "start_review"): "A suspended budget must be resumed before it is reviewed.",
    ("agreed", "start_review"): "The budget is not in use yet: activate it before reviewing it.",
    ("active", "agree"): "The budget has already been agreed.",
    ("agreed", "agree"): "The budget has already been agreed.",
}
VERBS = {"start_planning": "start planning for", "agree": "agree", "activate": "activate",
         "start_review": "start a review of", "complete_review": "complete a review of",
         "suspend": "suspend", "resume": "resume", "end": "end"}


class Base(DeclarativeBase):
    metadata = MetaData()


outbox = outbox_table(Base.metadata)
idempotency_keys = idempotency_table(Base.metadata)


class IllegalTransition(Exception):
    pass


def occurrences(item: dict) -> int:
    """How many times a line item is paid in a year: its frequency, or, for an item with both
    effective dates, how many times it falls within that period (at least once, at most a year's)."""
    per_year = FREQUENCIES.get(item.get("frequency") or "annual", 1)
    start, end = item.get("effective_from"), item.get("effective_to")
    if not (start and end) or per_year == 1:
        return per_year
    days = (date.fromisoformat(end) - date.fromisoformat(start)).days
    return max(1, min(per_year, round(days * per_year / 365)))


def annual_cost(item: dict) -> int:
    """What a line item costs within a year, in pence (12 weekly sessions cost 12, not 52)."""
    return item["pence"] * occurrences(item)


def allocated(line_items: list[dict]) -> int:
    return sum(annual_cost(i) for i in line_items)


class Budget(Base):
    __tablename__ = "budgets"

    id: Mapped[str] = mapped_column(String(36), primary_key=True)
    nhs_number: Mapped[str] = mapped_column(String(10), index=True)
    plan_id: Mapped[str] = mapped_column(String(36), index=True)
    status: Mapped[str] = mapped_column(String(20))
    version: Mapped[int] = mapped_column(Integer)
    #: annual_pence, currency, kind, holdings, priorities, line_items, holder, care_coordinator,
    #: next_review_date, review, suspension, ended
    content: Mapped[dict] = mapped_column(Json)
    agreed_by: Mapped[str | None] = mapped_column(String(200))
    person_agreed: Mapped[bool | None] = mapped_column(Boolean)
    agreed_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    created_by: Mapped[str] = mapped_column(String(200))
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    updated_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))

    __table_args__ = (Index("ix_budgets_person_created", "nhs_number", "created_at", "id"),)

    def transition(self, action: str) -> str:
        allowed = TRANSITIONS[self.status]
        if action not in allowed:
            reason = REASONS.get((self.status, action)) or REASONS.get(("*", action))
            if self.status == "ended":
                reason = "The budget has ended; an ended budget is final."
            if reason is None:
                state = self.status.replace("_", " ")
                article = "an" if state[0] in "aeiou" else "a"
                reason = f"You cannot {VERBS.get(action, action)} {article} {state} budget"
                reason += (f"; from {self.status.replace('_', ' ')} you can only "
                           + " or ".join(f"{VERBS[a]} it" for a in allowed) + ".")
            raise IllegalTransition(reason)
        self.status = allowed[action]
        return self.status
