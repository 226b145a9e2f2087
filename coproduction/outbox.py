"""The transactional outbox: a state change and its event in one transaction, and the relay.

A service writes its new state and calls :func:`record` in the same session; the relay
(`coproduction relay SERVICE`) publishes unsent rows in id order and marks a row sent only after
the broker confirmed it. The outbox is also the service's event log: rows are kept after sending
and served by ``GET /v1/events?after=N`` so the gateway can rebuild its projection.

Several relays may run at once on PostgreSQL: each takes a per-aggregate advisory lock, so one
aggregate's events are only ever published by one relay at a time, in order.
"""
from __future__ import annotations

import json
import logging
import threading
import time
from dataclasses import dataclass, field

from sqlalchemy import (BigInteger, Column, DateTime, Index, Integer, MetaData, String, Table, Text, any_,
                        bindparam, func, select, text, update)
from sqlalchemy.dialects.postgresql import ARRAY
from sqlalchemy.orm import Session

from .bus import OutgoingMessage, Publisher
from .db import BigId, Database
from .events import dumps, now
from . import metrics

log = logging.getLogger(__name__)


def outbox_table(metadata: MetaData) -> Table:
    table = Table(
        "outbox", metadata,
        Column("id", BigId, primary_key=True, autoincrement=True),
        Column("event_id", String(36), nullable=False, unique=True),
        Column("type", String(64), nullable=False),
        Column("subject", String(10), nullable=False, index=True),
        Column("aggregate_id", String(64), nullable=False),
        Column("aggregate_version", Integer, nullable=False),
        Column("body", Text, nullable=False),
        Column("created_at", DateTime(timezone=True), nullable=False),
        Column("sent_at", DateTime(timezone=True)),
        Column("attempts", Integer, nullable=False, default=0),
        Column("last_error", Text),
    )
    Index("ix_outbox_unsent", table.c.id, postgresql_where=table.c.sent_at.is_(None),
          sqlite_where=table.c.sent_at.is_(None))
    return table


def _row(event: dict, at, sent_at=None) -> dict:
    return dict(event_id=event["id"], type=event["type"], subject=event["subject"],
                aggregate_id=event["aggregateid"], aggregate_version=event["aggregateversion"],
                body=dumps(event).decode(), created_at=at, sent_at=sent_at, attempts=0)


def record(session: Session, table: Table, event: dict) -> None:
    """Add an event to the outbox inside the caller's transaction."""
    session.execute(table.insert().values(**_row(event, now())))
    if session.get_bind().dialect.name == "postgresql":
        session.execute(text("SELECT pg_notify(current_schema() || '_outbox', '')"))


def record_many(session: Session, table: Table, events: list[dict], *, sent_at=None) -> None:
    """Add many events in one multi-row insert (bulk loads such as ``coproduction seed``).

    ``sent_at`` marks them as already published: for a bulk load that the gateway reads with
    ``coproduction rebuild`` (from the feed) rather than over the bus.
    """
    if not events:
        return
    at = now()
    session.execute(table.insert(), [_row(e, at, sent_at) for e in events])
    if sent_at is None and session.get_bind().dialect.name == "postgresql":
        session.execute(text("SELECT pg_notify(current_schema() || '_outbox', '')"))


def read_feed(session: Session, table: Table, after: int, limit: int) -> list[dict]:
    rows = session.execute(
        select(table.c.id, table.c.body).where(table.c.id > after).order_by(table.c.id).limit(limit))
    return [{"position": row.id, "event": json.loads(row.body)} for row in rows]


@dataclass(eq=False)
class Relay:
    db: Database
    table: Table
    publisher: Publisher
    batch_size: int = 500
    idle_wait: float = 0.05
    window: int = 5000
    stopping: threading.Event = field(default_factory=threading.Event, init=False)
    _listener: object = field(default=None, init=False)

    def _claim(self, session: Session):
        t = self.table
        if self.db.is_postgres:
            # The window is a prefix of unsent rows; an aggregate whose lock another relay holds is
            # skipped whole, so no relay can publish version n+1 while another still holds n.
            # MATERIALIZED: locks are tried once per row, in id order, and only until a batch's
            # worth of rows is held (rows of a locked aggregate past the batch stay unsent and out
            # of other relays' reach until this transaction ends). Left to the planner, stale
            # statistics (analysed while the outbox was small) gave a nested loop that rescanned
            # the window for every row: 2.5 million lock calls and 2 s a batch.
            sql = text("""
                WITH win AS MATERIALIZED (SELECT id, aggregate_id FROM outbox WHERE sent_at IS NULL
                                          ORDER BY id LIMIT :window),
                     free AS MATERIALIZED (SELECT id FROM win WHERE
                                           pg_try_advisory_xact_lock(hashtext(current_schema() || aggregate_id))
                                           LIMIT :batch)
                SELECT o.id, o.event_id, o.type, o.body FROM outbox o
                WHERE o.id = ANY(ARRAY(SELECT id FROM free)) AND o.sent_at IS NULL
                ORDER BY o.id LIMIT :batch FOR UPDATE OF o SKIP LOCKED""")
            return session.execute(sql, {"window": self.window, "batch": self.batch_size}).all()
        return session.execute(
            select(t.c.id, t.c.event_id, t.c.type, t.c.body).where(t.c.sent_at.is_(None))
            .order_by(t.c.id).limit(self.batch_size)).all()

    def _among(self, ids: list[int]):
        """``id`` is one of ids; on PostgreSQL as one array parameter, so the statement's text is
        the same for every batch (an IN list of 500 parameters is compiled and parsed each time)."""
        if self.db.is_postgres:
            return self.table.c.id == any_(bindparam("ids", ids, type_=ARRAY(BigInteger)))
        return self.table.c.id.in_(ids)

    def run_once(self) -> int:
        """Publish one batch; return how many rows were marked sent."""
        t = self.table
        with self.db.session() as session:
            rows = self._claim(session)
            if not rows:
                return 0
            messages = [OutgoingMessage(r.event_id, r.type, r.body.encode()) for r in rows]
            try:
                results = self.publisher.publish_batch(messages)
            except Exception as exc:
                session.execute(update(t).where(self._among([r.id for r in rows]))
                                .values(attempts=t.c.attempts + 1, last_error=str(exc)[:500]))
                raise
            sent = [r.id for r in rows if results.get(r.event_id)]
            failed = [r.id for r in rows if not results.get(r.event_id)]
            if sent:
                session.execute(update(t).where(self._among(sent)).values(sent_at=now()))
            if failed:
                session.execute(update(t).where(self._among(failed)).values(
                    attempts=t.c.attempts + 1, last_error="not confirmed by the broker"))
            metrics.EVENTS_PUBLISHED.inc(len(sent))
            return len(sent) if not failed else -len(sent) - 1

    def backlog(self) -> int:
        with self.db.session() as session:
            return session.execute(select(func.count()).select_from(self.table)
                                   .where(self.table.c.sent_at.is_(None))).scalar_one()

    def run(self) -> None:
        """Publish until stopped; survive broker and database outages with backoff."""
        delay = 0.2
        measured = 0.0
        while not self.stopping.is_set():
            try:
                published = self.run_once()
                self.publisher.heartbeat()
                if time.monotonic() - measured > 1.0:
                    metrics.OUTBOX_BACKLOG.set(self.backlog())
                    measured = time.monotonic()
                delay = 0.2
                if published == 0:
                    self._wait_for_work()
                elif published < 0:  # some were not confirmed: do not spin on them
                    self.stopping.wait(1.0)
            except Exception as exc:  # broker or database down: keep the rows, retry later
                log.warning("relay: %s; retrying in %.1fs", exc, delay)
                self.stopping.wait(delay)
                delay = min(delay * 2, 10.0)
        self.publisher.close()

    def _wait_for_work(self) -> None:
        """Sleep until a new row is committed (PostgreSQL NOTIFY) or the idle wait passes."""
        if not self.db.is_postgres:
            self.stopping.wait(self.idle_wait)
            return
        try:
            if self._listener is None:
                raw = self.db.engine.raw_connection()
                driver = raw.driver_connection
                driver.autocommit = True
                channel = f"{self.db.schema or 'public'}_outbox"
                driver.execute(f'LISTEN "{channel}"')
                self._listener = raw
            gen = self._listener.driver_connection.notifies(timeout=max(self.idle_wait, 0.5))
            for _ in gen:
                break
        except Exception:
            if self._listener is not None:
                try:
                    self._listener.invalidate()
                except Exception:
                    pass
            self._listener = None
            self.stopping.wait(self.idle_wait)

    def stop(self) -> None:
        self.stopping.set()


def emit(session: Session, table: Table, *, service: str, type: str, subject: str,
         aggregate_id: str, aggregate_version: int, data: dict, traceparent: str | None = None) -> dict:
    """Build a validated event and add it to the outbox in the caller's transaction."""
    from .events import make_event
    from .http import refuse_if_validating_only
    refuse_if_validating_only()  # every change writes an event: none is made on a validation request
    event = make_event(source=service, type=type, subject=subject, aggregate_id=aggregate_id,
                       aggregate_version=aggregate_version, data=data, traceparent=traceparent)
    record(session, table, event)
    return event
