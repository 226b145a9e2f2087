"""Applying events to the gateway's read model: idempotent, versioned, one transaction a batch.

For each event: record its id in the inbox (a duplicate stops here), append it to the change log,
keep the aggregate's state if its version is newer than what is held (an older event never
overwrites a newer one), and recompose the person's portfolio document.

The consumer applies one event at a time; ``coproduction rebuild`` applies a feed page at a time
through the same function and recomposes each person once at the end.
"""
from __future__ import annotations

import json
from datetime import datetime

from marshmallow import ValidationError
from sqlalchemy import bindparam, func, select, text, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session

from coproduction import jsonio
from coproduction.events import InvalidEvent, dumps, now

from . import portfolio, subjects
from .models import aggregates, change_log, inbox, portfolios
from .readers import READERS

CONSUMER = "gateway.portfolio"
CHANGE_LOG_LOCK = 7_240_001  # advisory lock id: change-log positions are assigned in commit order


def _time(value: str) -> datetime:
    return datetime.fromisoformat(value.replace("Z", "+00:00"))


_READERS: dict = {}


def _reader(cls):
    """One instance per reader class (building a marshmallow schema costs more than a load)."""
    if cls not in _READERS:
        _READERS[cls] = cls()
    return _READERS[cls]


def read(event: dict) -> tuple[str, str, dict]:
    try:
        service, kind, reader = READERS[event["type"]]
    except KeyError:
        raise InvalidEvent(f"unknown event type {event['type']}") from None
    try:
        data = _reader(reader).load(event["data"])
    except ValidationError as exc:
        raise InvalidEvent(f"{event['type']} data not valid: {json.dumps(exc.messages, sort_keys=True, default=str)}")
    return service, kind, data


def apply(session: Session, event: dict) -> bool:
    """Apply one event and recompose its person's portfolio; False if it was a duplicate."""
    return apply_many(session, [event]) == 1


def apply_many(session: Session, events: list[dict], recompose_people: bool = True) -> int:
    """Apply events in the given order in the caller's transaction; return how many were new."""
    parsed = [(event, *read(event)) for event in events]
    postgres = session.get_bind().dialect.name == "postgresql"
    people = sorted({event["subject"] for event, *_ in parsed})
    if postgres and recompose_people:  # one person's portfolio is recomposed by one transaction at a time
        _lock_people(session, people)

    at = now()
    inserted = _record_in_inbox(session, list({event["id"]: None for event, *_ in parsed}), at, postgres)
    fresh, seen = [], set()
    for item in parsed:
        event_id = item[0]["id"]
        if event_id in inserted and event_id not in seen:
            seen.add(event_id)
            fresh.append(item)
    if not fresh:
        return 0
    subjects.record_events(session, [(event, service) for event, service, *_ in fresh], at)

    newest: dict[tuple[str, str], tuple] = {}
    for event, service, kind, data in fresh:
        key = (service, event["aggregateid"])
        if key not in newest or newest[key][0]["aggregateversion"] < event["aggregateversion"]:
            newest[key] = (event, service, kind, data)
    held = {}
    by_service: dict[str, list[str]] = {}
    for service, aggregate_id in newest:
        by_service.setdefault(service, []).append(aggregate_id)
    for service, ids in by_service.items():  # service = x AND id = ANY(...): one index scan (a long
        # (service, id) IN ((..), ..) list plans as an OR of every pair and rechecks each on every row)
        held.update({(service, r.aggregate_id): r.version for r in session.execute(
            select(aggregates.c.aggregate_id, aggregates.c.version)
            .where(aggregates.c.service == service, aggregates.c.aggregate_id.in_(ids)))})
    inserts, updates = [], []
    for key, (event, service, kind, data) in newest.items():
        values = {"nhs_number": event["subject"], "kind": kind, "version": event["aggregateversion"],
                  "last_type": event["type"], "state": dict(data, _event_id=event["id"], _time=event["time"]),
                  "event_time": _time(event["time"]), "applied_at": at}
        if key not in held:
            inserts.append({"service": service, "aggregate_id": key[1], **values})
        elif held[key] < event["aggregateversion"]:
            updates.append({"k_service": service, "k_aggregate_id": key[1], "k_version": values["version"], **values})
    # Another transaction (a rebuild's other range, the consumer) may write the same aggregate
    # between the read above and these: an insert that meets its row updates it instead, and
    # neither overwrites a newer version.
    if inserts:
        session.execute(_insert_or_newer(postgres), inserts)
    if updates:
        session.execute(
            update(aggregates).where(aggregates.c.service == bindparam("k_service"),
                                     aggregates.c.aggregate_id == bindparam("k_aggregate_id"),
                                     aggregates.c.version < bindparam("k_version")),
            updates)

    if postgres:  # positions must become visible in order, or a feed reader could skip one
        session.execute(text("SELECT pg_advisory_xact_lock(:k)"), {"k": CHANGE_LOG_LOCK})
    session.execute(change_log.insert(), [
        {"event_id": e["id"], "type": e["type"], "subject": e["subject"], "event_time": _time(e["time"]),
         "body": dumps(e).decode()} for e, *_ in fresh])
    if recompose_people:
        recompose_many(session, {e["subject"] for e, *_ in fresh})
    return len(fresh)


def _insert_or_newer(postgres: bool):
    insert = (postgresql if postgres else sqlite).insert(aggregates)
    return insert.on_conflict_do_update(
        index_elements=[aggregates.c.service, aggregates.c.aggregate_id],
        set_={name: insert.excluded[name] for name in AGGREGATE_VALUES},
        where=aggregates.c.version < insert.excluded.version)


AGGREGATE_VALUES = ("nhs_number", "kind", "version", "last_type", "state", "event_time", "applied_at")


def _record_in_inbox(session: Session, event_ids: list[str], at: datetime, postgres: bool) -> set[str]:
    """Add the event ids to the inbox; return those that were not in it yet."""
    if postgres:  # one array parameter: the same SQL text whatever the batch's size, so parsed once
        return set(session.execute(text(
            "INSERT INTO inbox (consumer, event_id, processed_at) "
            "SELECT :consumer, id, :at FROM unnest(CAST(:ids AS text[])) AS id "
            "ON CONFLICT DO NOTHING RETURNING event_id"),
            {"consumer": CONSUMER, "at": at, "ids": event_ids}).scalars())
    return set(session.execute(
        sqlite.insert(inbox).values([{"consumer": CONSUMER, "event_id": i, "processed_at": at} for i in event_ids])
        .on_conflict_do_nothing().returning(inbox.c.event_id)).scalars())


def _lock_people(session: Session, people: list[str]) -> None:
    """Every person's lock in one round trip, taken in the given (sorted) order: unnest yields the
    array in order, so two transactions never wait for each other in a cycle."""
    session.execute(text("SELECT count(pg_advisory_xact_lock(hashtext('portfolio:' || k))) "
                         "FROM unnest(CAST(:keys AS text[])) AS k"),
                    {"keys": people})


def recompose_many(session: Session, nhs_numbers) -> None:
    """Recompose people's portfolios: two reads and one upsert for all of them."""
    people = sorted(set(nhs_numbers))
    if not people:
        return
    rows: dict[str, list] = {n: [] for n in people}
    for row in session.execute(select(aggregates).where(aggregates.c.nhs_number.in_(people))).mappings():
        rows[row["nhs_number"]].append(row)
    recent = newest_changes(session, people)
    _store(session, [(n, portfolio.compose(n, rows[n], recent[n]), portfolio.recent_changes(recent[n]))
                     for n in people])


def newest_changes(session: Session, people: list[str]) -> dict[str, list[tuple[int, datetime, dict]]]:
    """Each person's newest changes (``portfolio.CHANGES_KEPT`` of them), the newest first, as
    (position, time, event)."""
    c = change_log
    if len(people) == 1:  # the consumer's one person: an index scan that stops at the limit
        found = session.execute(select(c.c.subject, c.c.position, c.c.event_time, c.c.body)
                                .where(c.c.subject == people[0]).order_by(c.c.position.desc())
                                .limit(portfolio.CHANGES_KEPT))
    else:
        ranked = select(c.c.subject, c.c.position, c.c.event_time, c.c.body,
                        func.row_number().over(partition_by=c.c.subject, order_by=c.c.position.desc()).label("n")
                        ).where(c.c.subject.in_(people)).subquery()
        found = session.execute(select(ranked).where(ranked.c.n <= portfolio.CHANGES_KEPT)
                                .order_by(ranked.c.subject, ranked.c.n))
    recent: dict[str, list] = {n: [] for n in people}
    for row in found:
        recent[row.subject].append((row.position, row.event_time, jsonio.loads(row.body)))
    return recent


def _store(session: Session, documents: list[tuple[str, dict, dict]]) -> None:
    """Insert or replace portfolio documents and their recent changes (one statement for all of them)."""
    dialect = postgresql if session.get_bind().dialect.name == "postgresql" else sqlite
    stmt = dialect.insert(portfolios)
    stmt = stmt.on_conflict_do_update(index_elements=[portfolios.c.nhs_number],
                                      set_={"document": stmt.excluded.document,
                                            "recent_changes": stmt.excluded.recent_changes,
                                            "updated_at": stmt.excluded.updated_at})
    at = now()
    session.execute(stmt, [{"nhs_number": n, "document": d, "recent_changes": r, "updated_at": at}
                           for n, d, r in documents])
