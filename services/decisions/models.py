"""Shared decisions: what is stored, and the rules of a decision's life."""
from __future__ import annotations

from datetime import datetime

from sqlalchemy import JSON, DateTime, Integer, MetaData, String
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

from coproduction.idempotency import idempotency_table
from coproduction.outbox import outbox_table

Json = JSON().with_variant(JSONB(), "postgresql")


class Base(DeclarativeBase):
    metadata = MetaData()


outbox = outbox_table(Base.metadata)
idempotency_keys = idempotency_table(Base.metadata)

#: state -> {action: next state}. A decision is made (recorded) or put off (deferred); revisiting
#: it later makes a new decision that supersedes it. A deferred decision may be deferred again or
#: made. Only a superseded decision is final; a recorded one is never recorded twice.
TRANSITIONS = {
    "opened": {"record": "recorded", "defer": "deferred", "supersede": "superseded", "update": "opened",
               "follow_up": "opened"},
    "deferred": {"record": "recorded", "defer": "deferred", "supersede": "superseded", "update": "deferred",
                 "follow_up": "deferred"},
    "recorded": {"supersede": "superseded", "follow_up": "recorded"},
    "superseded": {},
}
WHY_NOT = {
    ("recorded", "record"): "it was already recorded; to revisit it, supersede it with a new decision",
    ("recorded", "defer"): "it was already recorded; to revisit it, supersede it with a new decision",
    ("recorded", "update"): "a recorded decision is kept as it was made; supersede it to change it",
    ("superseded", "record"): "it was superseded by a newer decision; record that one instead",
    ("superseded", "defer"): "it was superseded by a newer decision",
    ("superseded", "supersede"): "it was already superseded",
}
VERBS = {"record": "recorded", "defer": "deferred", "supersede": "superseded", "update": "changed",
         "follow_up": "followed up"}


class IllegalTransition(Exception):
    pass


class Decision(Base):
    __tablename__ = "decisions"

    id: Mapped[str] = mapped_column(String(36), primary_key=True)
    nhs_number: Mapped[str] = mapped_column(String(10), index=True)
    status: Mapped[str] = mapped_column(String(20))
    version: Mapped[int] = mapped_column(Integer)
    setting: Mapped[str] = mapped_column(String(20))
    encounter_id: Mapped[str | None] = mapped_column(String(100))
    content: Mapped[dict] = mapped_column(Json)
    supersedes: Mapped[str | None] = mapped_column(String(36))
    superseded_by: Mapped[str | None] = mapped_column(String(36))
    created_by: Mapped[str] = mapped_column(String(200))
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), index=True)
    updated_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))

    def transition(self, action: str) -> str:
        allowed = TRANSITIONS[self.status]
        if action not in allowed:
            reason = WHY_NOT.get((self.status, action))
            can = sorted(a for a in allowed if a not in ("update", "follow_up"))
            raise IllegalTransition(
                f"A {self.status} decision cannot be {VERBS.get(action, action)}"
                + (f": {reason}." if reason else
                   (f"; from {self.status} it can only be: {', '.join(can)}." if can
                    else f"; {self.status} is final.")))
        self.status = allowed[action]
        return self.status

    def option(self, option_id: str) -> dict | None:
        return next((o for o in self.content["options"] if o["id"] == option_id), None)
