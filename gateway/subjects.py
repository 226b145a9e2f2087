"""The resource → person index: whose record each resource is, and the relationships records establish.

Kept from the events (every event names its aggregate and its person) and from the creates the
gateway forwards (so a resource is known the moment its 201 is answered), never from what a request
says about itself. The access decision (gateway/policy/) settles a request naming a resource here.
"""
from __future__ import annotations

import uuid
from datetime import datetime

from sqlalchemy import exists, select
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session

from .models import care_relationships, subjects

#: the held relationship a record establishes for the organisation that created it. Hospitals are
#: not in it for decisions: their access rests on a declared, time-limited admission
HELD_KIND = {"plans": "plan", "budgets": "budget", "decisions": "decision", "groups": "course"}
NOT_HELD_BY = {("decisions", "hospital")}
#: held relationships have one row per person, organisation and kind: the same id from any path
RELATIONSHIP_IDS = uuid.UUID("5d0c2a4e-7f1b-4c53-9e0a-3b8f6c1d2e70")


def _insert_ignoring_duplicates(session: Session, table, rows: list[dict]) -> None:
    if not rows:
        return
    dialect = postgresql if session.get_bind().dialect.name == "postgresql" else sqlite
    session.execute(dialect.insert(table).on_conflict_do_nothing(), rows)


def person_of(session: Session, service: str, resource_id: str) -> str | None:
    return session.execute(select(subjects.c.nhs_number).where(
        subjects.c.service == service, subjects.c.resource_id == resource_id)).scalar_one_or_none()


def holds_any(service: str, nhs_number: str):
    """A SQL condition: the person already has a record in this service."""
    return exists().where(subjects.c.service == service, subjects.c.nhs_number == nhs_number)


def held_relationship(nhs_number: str, service: str, org: str, role: str | None, at: datetime,
                      source: str, resource_id: str | None = None, client_id: str | None = None,
                      client_name: str | None = None) -> dict | None:
    """The row of the held relationship a record created by ``org`` establishes (None if none)."""
    if not org or service not in HELD_KIND or (service, role) in NOT_HELD_BY:
        return None
    kind = HELD_KIND[service]
    return dict(id=str(uuid.uuid5(RELATIONSHIP_IDS, f"{nhs_number}|{org}|{kind}")), nhs_number=nhs_number,
                org=org, kind=kind, source=source, role=role, client_id=client_id, client_name=client_name,
                resource_id=resource_id, started_at=at)


def record_created(session: Session, service: str, resource_id: str, nhs_number: str, caller,
                   at: datetime) -> None:
    """A create the gateway forwarded was answered 201: index it and establish the creator's relationship."""
    _insert_ignoring_duplicates(session, subjects, [dict(service=service, resource_id=resource_id,
                                                         nhs_number=nhs_number, recorded_at=at)])
    held = held_relationship(nhs_number, service, caller.org, caller.role, at, "create", resource_id,
                             caller.client_id, caller.name)
    _insert_ignoring_duplicates(session, care_relationships, [held] if held else [])


def record_events(session: Session, events: list[tuple[dict, str]], at: datetime) -> None:
    """Index the (event, service) pairs being applied; an aggregate's first event (version 1) names
    the organisation that created it, which holds the record."""
    index, held = {}, {}
    for event, service in events:
        index[(service, event["aggregateid"])] = dict(service=service, resource_id=event["aggregateid"],
                                                      nhs_number=event["subject"], recorded_at=at)
        who = (event.get("data") or {}).get("changed_by") or {}
        if event.get("aggregateversion") == 1:
            row = held_relationship(event["subject"], service, who.get("org"), who.get("role"), at, "event",
                                    event["aggregateid"], who.get("client"))
            if row:
                held.setdefault(row["id"], row)
    _insert_ignoring_duplicates(session, subjects, sorted(index.values(), key=lambda r: (r["service"], r["resource_id"])))
    _insert_ignoring_duplicates(session, care_relationships, sorted(held.values(), key=lambda r: r["id"]))
