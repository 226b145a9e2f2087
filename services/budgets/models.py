"""Personal health budgets: what is stored (the rules are in ``domain``)."""
from __future__ import annotations

from datetime import datetime

from sqlalchemy import JSON, Boolean, DateTime, Index, Integer, MetaData, String
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

from coproduction.idempotency import idempotency_table
from coproduction.outbox import outbox_table

from .domain import next_status

Json = JSON().with_variant(JSONB(), "postgresql")


class Base(DeclarativeBase):
    metadata = MetaData()


outbox = outbox_table(Base.metadata)
idempotency_keys = idempotency_table(Base.metadata)


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
        self.status = next_status(self.status, action)
        return self.status
