"""Personal health budgets: what is stored (the rules are in ``domain``)."""
from __future__ import annotations

from sqlalchemy import Index, MetaData, String
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

from coproduction.aggregate import Agreement, Json, PersonRow, service_tables


class Base(DeclarativeBase):
    metadata = MetaData()


outbox, idempotency_keys = service_tables(Base.metadata)


class Budget(PersonRow, Agreement, Base):
    __tablename__ = "budgets"

    plan_id: Mapped[str] = mapped_column(String(36), index=True)
    #: annual_pence, currency, kind, holdings, priorities, line_items, holder, care_coordinator,
    #: next_review_date, review, suspension, ended
    content: Mapped[dict] = mapped_column(Json)

    __table_args__ = (Index("ix_budgets_person_created", "nhs_number", "created_at", "id"),)
