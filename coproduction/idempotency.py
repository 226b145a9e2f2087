"""Idempotency-Key on creates: a retried POST returns the first result, never a second resource.

The key and the response are stored in the same transaction as the resource, so two racing
requests with one key cannot both create: the loser's transaction fails on the key and it
answers with the winner's stored response.
"""
from __future__ import annotations

import hashlib
import json
from typing import Callable

from flask import Response, request
from sqlalchemy import Column, DateTime, Integer, MetaData, String, Table, Text, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from .auth import service_caller
from .events import now
from .http import Problem, ctx, with_etag


def idempotency_table(metadata: MetaData) -> Table:
    return Table(
        "idempotency_keys", metadata,
        Column("client_id", String(64), primary_key=True),
        Column("key", String(200), primary_key=True),
        Column("request_hash", String(64), nullable=False),
        Column("status", Integer, nullable=False),
        Column("body", Text, nullable=False),
        Column("created_at", DateTime(timezone=True), nullable=False),
    )


def _key() -> str | None:
    key = request.headers.get("Idempotency-Key")
    if key is not None and not 1 <= len(key) <= 200:
        raise Problem(422, "Unprocessable Content", errors={"Idempotency-Key": ["Must be 1 to 200 characters."]})
    return key


def _hash() -> str:
    return hashlib.sha256(request.method.encode() + request.path.encode() + request.get_data()).hexdigest()


def replay(session: Session, table: Table):
    """The stored response for this request's Idempotency-Key, or None."""
    key = _key()
    if key is None:
        return None
    row = session.execute(select(table).where(table.c.client_id == service_caller().client_id,
                                              table.c.key == key)).first()
    if row is None:
        return None
    if row.request_hash != _hash():
        raise Problem(422, "Unprocessable Content",
                      "This Idempotency-Key was already used for a different request.",
                      errors={"Idempotency-Key": ["Already used for a different request."]})
    return with_etag(json.loads(row.body), row.status, {"Idempotent-Replayed": "true"})


def remember(session: Session, table: Table, payload: dict, status: int) -> None:
    key = _key()
    if key is None:
        return
    session.execute(table.insert().values(
        client_id=service_caller().client_id, key=key, request_hash=_hash(), status=status,
        body=json.dumps(payload, default=str), created_at=now()))


def create_once(table: Table, create: Callable[[Session], tuple[dict, str]], *,
                lock: Callable[[Session], object] | None = None,
                conflict: Callable[[], Exception] | None = None) -> Response:
    """Answer a create (201) at most once per Idempotency-Key: ``create(session)`` makes the
    resource and returns its representation and Location, in the transaction that stores the key.

    ``lock(session)`` runs before the stored response is looked up, so a retry that races its own
    first attempt waits for it and gets its answer. A request that loses the race on the key is
    answered with the winner's response; when the race was on something else (no response is
    stored), ``conflict()`` is raised if given, the database's error if not.
    """
    db = ctx().db
    try:
        with db.session() as session:
            if lock is not None:
                lock(session)
            stored = replay(session, table)
            if stored is not None:
                return stored
            payload, location = create(session)
            remember(session, table, payload, 201)
    except IntegrityError:
        with db.session() as session:
            stored = replay(session, table)
        if stored is not None:
            return stored
        if conflict is not None:
            raise conflict() from None
        raise
    return with_etag(payload, 201, {"Location": location})


def created(command: Callable[[Session, dict], tuple], body: dict, representation: Callable[[object], dict],
            collection: str) -> Callable[[Session], tuple[dict, str]]:
    """The ``create`` of :func:`create_once` for a command that returns ``(row, event)``: the new
    row's representation, at ``<collection>/<id>``."""
    def create(session: Session) -> tuple[dict, str]:
        row = command(session, body)[0]
        return representation(row), f"{collection}/{row.id}"
    return create
