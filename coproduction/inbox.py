"""The consumer's inbox: processed event ids, written in the same transaction as the effect."""
from __future__ import annotations

from sqlalchemy import Column, DateTime, MetaData, String, Table
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session

from .events import now


def inbox_table(metadata: MetaData) -> Table:
    return Table(
        "inbox", metadata,
        Column("consumer", String(100), primary_key=True),
        Column("event_id", String(36), primary_key=True),
        Column("processed_at", DateTime(timezone=True), nullable=False),
    )


def first_time(session: Session, table: Table, consumer: str, event_id: str) -> bool:
    """Record the event as processed; False if it already was (a duplicate delivery)."""
    dialect = postgresql if session.get_bind().dialect.name == "postgresql" else sqlite
    stmt = dialect.insert(table).values(consumer=consumer, event_id=event_id, processed_at=now())
    inserted = session.execute(stmt.on_conflict_do_nothing().returning(table.c.event_id))
    return inserted.scalar_one_or_none() is not None
