"""Care and support plans: what is stored, and the rules of a plan's life."""
from __future__ import annotations

from datetime import datetime

from sqlalchemy import JSON, Boolean, DateTime, ForeignKey, Integer, MetaData, String
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

from coproduction.idempotency import idempotency_table
from coproduction.outbox import outbox_table

Json = JSON().with_variant(JSONB(), "postgresql")


class Base(DeclarativeBase):
    metadata = MetaData()


outbox = outbox_table(Base.metadata)
idempotency_keys = idempotency_table(Base.metadata)

#: state -> {action: next state}. A draft is edited in place (each edit a new version, plan.revised);
#: an agreed plan is revised (a new version, still active); an on-hold plan may have its review
#: date, goals and actions brought up to date before it resumes. Completed and revoked are final.
TRANSITIONS = {
    "draft": {"revise": "draft", "agree": "active", "revoke": "revoked"},
    "active": {"revise": "active", "hold": "on_hold", "close": "completed", "revoke": "revoked"},
    "on_hold": {"revise": "on_hold", "resume": "active", "close": "completed", "revoke": "revoked"},
    "completed": {},
    "revoked": {},
}

#: how each action reads in a sentence ("A draft plan cannot be closed")
DONE = {"agree": "agreed", "revise": "revised", "hold": "put on hold", "resume": "resumed",
        "close": "closed", "revoke": "revoked"}

#: FHIR Goal.lifecycleStatus: which changes make sense (anything may become entered-in-error)
GOAL_TRANSITIONS = {
    "proposed": {"planned", "accepted", "active", "rejected", "cancelled"},
    "planned": {"accepted", "active", "on-hold", "cancelled"},
    "accepted": {"active", "on-hold", "cancelled"},
    "active": {"on-hold", "completed", "cancelled"},
    "on-hold": {"active", "completed", "cancelled"},
    "completed": {"active"},  # re-opened, e.g. a weight goal that slipped
    "cancelled": set(),
    "rejected": set(),
    "entered-in-error": set(),
}


class IllegalTransition(Exception):
    pass


class Plan(Base):
    __tablename__ = "plans"

    id: Mapped[str] = mapped_column(String(36), primary_key=True)
    nhs_number: Mapped[str] = mapped_column(String(10), index=True)
    status: Mapped[str] = mapped_column(String(20))
    version: Mapped[int] = mapped_column(Integer)
    content: Mapped[dict] = mapped_column(Json)
    agreed_by: Mapped[str | None] = mapped_column(String(200))
    person_agreed: Mapped[bool | None] = mapped_column(Boolean)
    agreed_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    created_by: Mapped[str] = mapped_column(String(200))
    updated_by: Mapped[str | None] = mapped_column(String(200))
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    updated_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))

    def transition(self, action: str) -> str:
        allowed = TRANSITIONS[self.status]
        state = self.status.replace("_", " ")
        if action not in allowed:
            raise IllegalTransition(
                f"A{'n' if state[0] in 'aeiou' else ''} {state} plan cannot be {DONE[action]}"
                + (f"; a {state} plan can only be {', '.join(DONE[a] for a in sorted(allowed))}."
                   if allowed else f"; {state} is final."))
        self.status = allowed[action]
        return self.status


def goal_transition_problem(goal_id: str, old: str, new: str) -> str | None:
    """Why a goal may not go from lifecycle ``old`` to ``new``, or None when it may."""
    if old == new or new == "entered-in-error":
        return None
    allowed = GOAL_TRANSITIONS.get(old, set())
    if new in allowed:
        return None
    return (f"Goal {goal_id} is {old} and cannot become {new}"
            + (f"; from {old} it can become {', '.join(sorted(allowed))} or entered-in-error." if allowed
               else f"; {old} is final (only entered-in-error is allowed)."))


class PlanVersion(Base):
    """Every version of every plan as it was: the old ones stay readable after a revision."""

    __tablename__ = "plan_versions"

    plan_id: Mapped[str] = mapped_column(String(36), ForeignKey("plans.id"), primary_key=True)
    version: Mapped[int] = mapped_column(Integer, primary_key=True)
    event_type: Mapped[str] = mapped_column(String(64))
    status: Mapped[str] = mapped_column(String(20))
    snapshot: Mapped[dict] = mapped_column(Json)
    changes: Mapped[list] = mapped_column(Json)
    reason: Mapped[str | None] = mapped_column(String(500))
    changed_by: Mapped[dict] = mapped_column(Json)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
