"""Care and support plans: what is stored (the rules of a plan's life are in ``domain.py``)."""
from __future__ import annotations

from datetime import datetime

from sqlalchemy import DateTime, ForeignKey, Integer, MetaData, String
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

from coproduction.aggregate import Agreement, Json, PersonRow, service_tables


class Base(DeclarativeBase):
    metadata = MetaData()


outbox, idempotency_keys = service_tables(Base.metadata)


class Plan(PersonRow, Agreement, Base):
    __tablename__ = "plans"

    content: Mapped[dict] = mapped_column(Json)
    updated_by: Mapped[str | None] = mapped_column(String(200))


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
