"""Shared decisions: what is stored (the rules of a decision's life are in ``domain.py``)."""
from __future__ import annotations

from datetime import datetime

from sqlalchemy import DateTime, MetaData, String
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

from coproduction.aggregate import Json, PersonRow, service_tables


class Base(DeclarativeBase):
    metadata = MetaData()


outbox, idempotency_keys = service_tables(Base.metadata)


class Decision(PersonRow, Base):
    __tablename__ = "decisions"

    setting: Mapped[str] = mapped_column(String(20))
    encounter_id: Mapped[str | None] = mapped_column(String(100))
    content: Mapped[dict] = mapped_column(Json)
    supersedes: Mapped[str | None] = mapped_column(String(36))
    superseded_by: Mapped[str | None] = mapped_column(String(36))
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), index=True)
