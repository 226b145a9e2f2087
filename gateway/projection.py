"""Applying events to the gateway's read model: idempotent, versioned, one transaction each.

For each event: record its id in the inbox (a duplicate stops here), append it to the change log,
keep the aggregate's state if its version is newer than what is held (an older event never
overwrites a newer one), and recompose the person's portfolio document.
"""
from __future__ import annotations

import json
from datetime import datetime

from marshmallow import ValidationError
from sqlalchemy import select, text, update
from sqlalchemy.orm import Session

from coproduction.events import InvalidEvent, dumps, now
from coproduction.inbox import first_time

from . import portfolio
from .models import aggregates, change_log, inbox, portfolios
from .readers import READERS

CONSUMER = "gateway.portfolio"
CHANGE_LOG_LOCK = 7_240_001  # advisory lock id: change-log positions are assigned in commit order


def _time(value: str) -> datetime:
    return datetime.fromisoformat(value.replace("Z", "+00:00"))


def read(event: dict) -> tuple[str, str, dict]:
    try:
        service, kind, reader = READERS[event["type"]]
    except KeyError:
        raise InvalidEvent(f"unknown event type {event['type']}") from None
    try:
        data = reader().load(event["data"])
    except ValidationError as exc:
        raise InvalidEvent(f"{event['type']} data not valid: {json.dumps(exc.messages, sort_keys=True, default=str)}")
    return service, kind, data


def apply(session: Session, event: dict) -> bool:
    """Apply one event; False if it was a duplicate."""
    service, kind, data = read(event)
    postgres = session.get_bind().dialect.name == "postgresql"
    subject = event["subject"]
    if postgres:  # one person's portfolio is recomposed by one transaction at a time
        session.execute(text("SELECT pg_advisory_xact_lock(hashtext(:k))"), {"k": "portfolio:" + subject})
    if not first_time(session, inbox, CONSUMER, event["id"]):
        return False
    event_time = _time(event["time"])
    held = session.execute(
        select(aggregates.c.version).where(aggregates.c.service == service,
                                           aggregates.c.aggregate_id == event["aggregateid"])
    ).scalar_one_or_none()
    version = event["aggregateversion"]
    state = dict(data, _event_id=event["id"], _time=event["time"])
    values = dict(nhs_number=subject, kind=kind, version=version, last_type=event["type"],
                  state=state, event_time=event_time, applied_at=now())
    if held is None:
        session.execute(aggregates.insert().values(service=service, aggregate_id=event["aggregateid"], **values))
    elif held < version:
        session.execute(update(aggregates).where(aggregates.c.service == service,
                                                 aggregates.c.aggregate_id == event["aggregateid"])
                        .values(**values))
    if postgres:  # positions must become visible in order, or a feed reader could skip one
        session.execute(text("SELECT pg_advisory_xact_lock(:k)"), {"k": CHANGE_LOG_LOCK})
    session.execute(change_log.insert().values(event_id=event["id"], type=event["type"], subject=subject,
                                               event_time=event_time, body=dumps(event).decode()))
    recompose(session, subject)
    return True


def recompose(session: Session, nhs_number: str) -> None:
    rows = session.execute(select(aggregates).where(aggregates.c.nhs_number == nhs_number)).mappings().all()
    recent = session.execute(
        select(change_log.c.position, change_log.c.type, change_log.c.event_time, change_log.c.body)
        .where(change_log.c.subject == nhs_number).order_by(change_log.c.position.desc()).limit(50)
    ).all()
    document = portfolio.compose(nhs_number, rows, recent)
    exists = session.execute(select(portfolios.c.nhs_number).where(portfolios.c.nhs_number == nhs_number)
                             ).scalar_one_or_none()
    if exists:
        session.execute(update(portfolios).where(portfolios.c.nhs_number == nhs_number)
                        .values(document=document, updated_at=now()))
    else:
        session.execute(portfolios.insert().values(nhs_number=nhs_number, document=document, updated_at=now()))
