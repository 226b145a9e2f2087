"""Care and support plans: what is stored, and the rules of a plan's life."""
from __future__ import annotations

from datetime import datetime

from sqlalchemy import JSON, Boolean, DateTime, Integer, MetaData, String
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

from coproduction.idempotency import idempotency_table
from coproduction.outbox import outbox_table

Json = JSON().with_variant(JSONB(), "postgresql")


class Base(DeclarativeBase):
    metadata = MetaData()


outbox = outbox_table(Base.metadata)
idempotency_keys = idempotency_table(Base.metadata)

#: state -> {action: next state}
TRANSITIONS = {
    "draft": {"agree": "active", "revoke": "revoked"},
    "active": {"revise": "active", "hold": "on_hold", "close": "completed", "revoke": "revoked"},
    "on_hold": {"resume": "active", "close": "completed", "revoke": "revoked"},
    "completed": {},
    "revoked": {},
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
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    updated_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))

    def transition(self, action: str) -> str:
        allowed = TRANSITIONS[self.status]
        if action not in allowed:
            raise IllegalTransition(
                f"A {self.status} plan cannot be {action}d"
                + (f"; from {self.status} it can only be: {', '.join(sorted(allowed))}." if allowed
                   else f"; {self.status} is final."))
        self.status = allowed[action]
        return self.status
