"""Webhook subscriptions: ``/v1/subscriptions``. A client registers a URL and the event types it
wants; ``coproduction deliver`` (gateway/webhooks/dispatcher.py) sends them. A client sees and
manages only its own subscriptions; every route needs ``subscriptions:manage``.
"""
from __future__ import annotations

import uuid
from datetime import datetime

import flask_smorest
from sqlalchemy import delete, func, select, update

from coproduction import idempotency
from coproduction.events import iso, now
from coproduction.http import Problem, ctx
from coproduction.paging import (MAX_POSITION, invalid_cursor, keyset_query, keyset_split, plain_position,
                                 position_cursor, read_position_cursor)

from .. import policy
from ..models import change_log, idempotency_keys
from ..security import also_audit
from .models import webhook_attempts, webhook_deliveries, webhook_subscriptions
from .patterns import check_patterns, known_types, matches, service_of
from .schemas import (DeliveryListSchema, DeliveryQuery, ListQuery, ReplayResultSchema, ReplaySchema,
                      SubscriptionCreatedSchema, SubscriptionCreateSchema, SubscriptionListSchema,
                      SubscriptionSchema)
from .signing import new_secret
from .transport import UnsafeUrl, resolve_safely

SCOPE = "subscriptions:manage"
LIST_CURSOR_HINT = "Not a cursor this list gave out."

bp = flask_smorest.Blueprint(
    "subscriptions", __name__, url_prefix="/v1/subscriptions",
    description="Webhook subscriptions: signed deliveries (Standard Webhooks) of the change log's events")


# -- helpers ------------------------------------------------------------------------------------
def _t(value: datetime | None) -> str | None:
    return iso(value) if value is not None else None


def _json(row, pending: int = 0) -> dict:
    return {
        "id": row["id"], "url": row["url"], "types": row["types"], "description": row["description"],
        "status": row["status"], "status_reason": row["status_reason"], "cursor": position_cursor(row["cursor"]),
        "replaying": row["replay_until"] is not None, "pending": pending, "version": row["version"],
        "created_at": _t(row["created_at"]), "updated_at": _t(row["updated_at"]),
    }


def _pending(session, sub_id: str) -> int:
    d = webhook_deliveries
    return session.execute(select(func.count()).select_from(d)
                           .where(d.c.subscription_id == sub_id, d.c.status == "pending")).scalar_one()


def _own(session, sub_id: str, client_id: str, for_update: bool = False):
    try:
        uuid.UUID(sub_id)
    except ValueError:
        raise Problem(404, "Not Found", "No such subscription.")
    s = webhook_subscriptions
    stmt = select(s).where(s.c.id == sub_id, s.c.client_id == client_id, s.c.kind == "webhook")
    if for_update:
        stmt = stmt.with_for_update()
    row = session.execute(stmt).mappings().first()
    if row is None:  # another client's subscription is as invisible as a missing one
        raise Problem(404, "Not Found", "No such subscription.")
    return row


def _position(value, field: str = "after") -> int:
    """A change-log cursor: the change feed's (GET /v1/changes writes the same ones for the same
    positions, so a client replays from either), or a position (integer or digits)."""
    if isinstance(value, int) and not isinstance(value, bool) and 0 <= value <= MAX_POSITION:
        return value
    if isinstance(value, str):
        position = plain_position(value)
        if position is None:
            position = read_position_cursor(value)
        if position is not None:
            return position
    raise invalid_cursor(field, "Must be a change-log cursor: a next_cursor of GET /v1/changes, or a delivery's cursor.")


def _check_scopes(who, patterns: list[str]) -> None:
    """A client may subscribe only to what it may read: budget.* needs budgets:read."""
    needed = {f"{service_of(t)}:read" for t in known_types() if matches(patterns, t)}
    missing = sorted(scope for scope in needed if not who.has(scope))
    if missing:
        raise Problem(403, "Forbidden", f"These types need scopes this client does not hold: {', '.join(missing)}.",
                      errors={"types": [f"Needs {scope}." for scope in missing]})


#: a delivery the client may not see is listed without what it would reveal: whose, what, and why
WITHHELD = {"event_id": None, "type": None, "subject": None, "last_error": None}


def _what(row) -> dict:
    return {"event_id": row["event_id"], "type": row["type"], "subject": row["subject"],
            "last_error": row["last_error"]}


# -- routes ---------------------------------------------------------------------------------------
@bp.route("", methods=["POST"])
@bp.arguments(SubscriptionCreateSchema)
@bp.response(201, SubscriptionCreatedSchema)
def create_subscription(body):
    """Subscribe a URL to event types; the answer holds the signing secret, shown only this once."""
    who = policy.current().caller
    settings = ctx().settings
    types = list(dict.fromkeys(body["types"]))
    errors = {}
    try:
        resolve_safely(body["url"], settings.allow_loopback_webhooks)
    except UnsafeUrl as exc:
        errors["url"] = [f"Refused: the URL {exc}."]
    problems = check_patterns(types)
    if problems:
        errors["types"] = problems
    if errors:
        raise Problem(422, "Unprocessable Content", "Some fields are not valid: " + ", ".join(sorted(errors)),
                      errors=errors)
    _check_scopes(who, types)
    at = now()
    row = dict(id=str(uuid.uuid4()), client_id=who.client_id, url=body["url"], types=types,
               description=body.get("description"), secret=new_secret(), status="active",
               status_reason=None, replay_next=None, replay_until=None, version=1, created_at=at, updated_at=at)

    def create(session):
        # from now on: events already in the change log are there for a replay to send
        row["cursor"] = session.execute(select(func.max(change_log.c.position))).scalar_one() or 0
        session.execute(webhook_subscriptions.insert().values(**row))
        return dict(_json(row), secret=row["secret"]), f"/v1/subscriptions/{row['id']}"

    answer = idempotency.create_once(idempotency_keys, create)
    # a replayed create keeps the Location of the first answer
    answer.headers.setdefault("Location", f"/v1/subscriptions/{answer.get_json()['id']}")
    return answer


@bp.route("", methods=["GET"])
@bp.arguments(ListQuery, location="query")
@bp.response(200, SubscriptionListSchema)
def list_subscriptions(query):
    """This client's subscriptions, oldest first."""
    who = policy.current().caller
    s = webhook_subscriptions
    stmt = keyset_query(select(s).where(s.c.client_id == who.client_id, s.c.kind == "webhook"),
                        s.c.created_at, s.c.id, query["limit"], query["cursor"], hint=LIST_CURSOR_HINT)
    with ctx().db.session() as session:
        rows, next_cursor = keyset_split(session.execute(stmt).mappings().all(), query["limit"],
                                         lambda row: (row["created_at"], row["id"]))
        items = [_json(r, _pending(session, r["id"])) for r in rows]
    return {"items": items, "next_cursor": next_cursor}


@bp.route("/<sub_id>", methods=["GET"])
@bp.response(200, SubscriptionSchema)
def get_subscription(sub_id):
    who = policy.current().caller
    with ctx().db.session() as session:
        row = _own(session, sub_id, who.client_id)
        payload = _json(row, _pending(session, sub_id))
    return payload, 200, {"ETag": f'"{row["version"]}"'}


@bp.route("/<sub_id>", methods=["DELETE"])
@bp.response(204)
def delete_subscription(sub_id):
    """Stop the subscription and forget it, with its deliveries and their attempts."""
    who = policy.current().caller
    with ctx().db.session() as session:
        _own(session, sub_id, who.client_id, for_update=True)
        session.execute(delete(webhook_attempts).where(webhook_attempts.c.subscription_id == sub_id))
        session.execute(delete(webhook_deliveries).where(webhook_deliveries.c.subscription_id == sub_id))
        session.execute(delete(webhook_subscriptions).where(webhook_subscriptions.c.id == sub_id))
    return None


@bp.route("/<sub_id>/deliveries", methods=["GET"])
@bp.arguments(DeliveryQuery, location="query")
@bp.response(200, DeliveryListSchema)
def list_deliveries(query, sub_id):
    """Every delivery, newest first, each with every attempt made (time, status code or error,
    duration, when the next attempt is due)."""
    who = policy.current().caller
    d, a = webhook_deliveries, webhook_attempts
    stmt = select(d).where(d.c.subscription_id == sub_id)
    if query["status"]:
        stmt = stmt.where(d.c.status == query["status"])
    if query["cursor"] is not None:
        seq = plain_position(query["cursor"])
        if seq is None:
            raise invalid_cursor("cursor", LIST_CURSOR_HINT)
        stmt = stmt.where(d.c.seq < seq)
    with ctx().db.session() as session:
        _own(session, sub_id, who.client_id)
        rows = session.execute(stmt.order_by(d.c.seq.desc()).limit(query["limit"] + 1)).mappings().all()
        page = rows[: query["limit"]]
        attempts: dict[str, list] = {}
        if page:
            for at in session.execute(select(a).where(a.c.delivery_id.in_([r["id"] for r in page]))
                                      .order_by(a.c.id)).mappings():
                attempts.setdefault(at["delivery_id"], []).append({
                    "attempt": at["attempt"], "at": _t(at["at"]), "outcome": at["outcome"],
                    "status_code": at["status_code"], "error": at["error"], "duration_ms": at["duration_ms"],
                    "next_attempt_at": _t(at["next_attempt_at"]), "response": at["response"]})
        seen = policy.Visibility.of(session, who, {r["subject"] for r in page})
    shown = {r["id"] for r in page if r["status"] != "withheld" and seen.allows(r["subject"], service_of(r["type"]))}
    also_audit(r["subject"] for r in page if r["id"] in shown)  # the people this page names
    items = [{
        "id": r["id"], **(_what(r) if r["id"] in shown else WITHHELD),
        "cursor": position_cursor(r["position"]), "replay": r["replay"], "status": r["status"],
        "attempt_count": r["attempts"], "next_attempt_at": _t(r["next_attempt_at"]),
        "last_status_code": r["last_status_code"],
        "created_at": _t(r["created_at"]), "delivered_at": _t(r["delivered_at"]),
        "attempts": attempts.get(r["id"], []),
    } for r in page]
    next_cursor = str(page[-1]["seq"]) if len(rows) > query["limit"] else None
    return {"items": items, "next_cursor": next_cursor}


@bp.route("/<sub_id>/replay", methods=["POST"])
@bp.arguments(ReplaySchema)
@bp.response(202, ReplayResultSchema)
def replay(body, sub_id):
    """Re-enable the subscription, resend every pending delivery now, and (with ``after``) send again
    every matching event after that change-log cursor. The dispatcher does the work."""
    who = policy.current().caller
    after = None if body["after"] is None else _position(body["after"])
    s, d = webhook_subscriptions, webhook_deliveries
    at = now()
    with ctx().db.session() as session:
        row = _own(session, sub_id, who.client_id, for_update=True)
        values = dict(status="active", status_reason=None, updated_at=at, version=row["version"] + 1)
        until = row["cursor"]
        if after is not None and after < until:
            if row["replay_until"] is not None:  # one already running: widen it
                values.update(replay_next=min(after, row["replay_next"]), replay_until=until)
            else:
                values.update(replay_next=after, replay_until=until)
        session.execute(update(s).where(s.c.id == sub_id).values(**values))
        session.execute(update(d).where(d.c.subscription_id == sub_id, d.c.status == "pending")
                        .values(next_attempt_at=at, retry_step=0))
        row = session.execute(select(s).where(s.c.id == sub_id)).mappings().first()
        pending = _pending(session, sub_id)
    return {"subscription": _json(row, pending), "after": None if after is None else position_cursor(after),
            "until": position_cursor(row["replay_until"]) if row["replay_until"] is not None else None,
            "pending": pending}
