"""``/fhir/R4/Subscription``: topic-based subscriptions (Subscriptions Backport IG), on the webhook
machinery. A Subscription is a row of ``webhook_subscriptions`` of kind ``fhir``: the dispatcher
(gateway/webhooks/dispatcher.py) fans the change log out to it, numbers its events, checks the person's consent
and the care relationship when each is sent, signs it (Standard Webhooks headers, the secret given
once at creation) and retries it on the same schedule. ``$status`` says where it stands; ``$events``
returns the events it was sent (or missed), by number, checked again for the caller.
"""
from __future__ import annotations

import json
import uuid

from flask import request
from sqlalchemy import delete, func, select

from coproduction.events import now
from coproduction.http import Problem, ctx
from interop.fhir_bundles import searchset
from interop.fhir_subscriptions import (TOPICS, notification_bundle, read_subscription, status_parameters,
                                        subscription_resource)
from interop.fhir_plans import EXT

from .. import policy
from ..models import change_log
from ..security import also_audit
from ..webhooks.models import webhook_attempts, webhook_deliveries, webhook_subscriptions
from ..webhooks.signing import new_secret
from ..webhooks.transport import UnsafeUrl, resolve_safely
from . import bp
from .notifications import event_entry
from .responses import base_url, fhir_json, timestamp

MAX_EVENTS = 100


def _own(session, sub_id: str, for_update: bool = False):
    s = webhook_subscriptions
    try:
        uuid.UUID(sub_id)
    except ValueError:
        raise Problem(404, "Not Found", "No such Subscription.") from None
    stmt = select(s).where(s.c.id == sub_id, s.c.client_id == policy.current().caller.client_id, s.c.kind == "fhir")
    row = session.execute(stmt.with_for_update() if for_update else stmt).mappings().first()
    if row is None:  # another client's subscription is as invisible as a missing one
        raise Problem(404, "Not Found", "No such Subscription.")
    return row


@bp.post("/Subscription")
def create_subscription():
    caller = policy.current().caller
    kept, errors = read_subscription(policy.body_json())
    if kept.get("endpoint"):
        try:
            resolve_safely(kept["endpoint"], ctx().settings.allow_loopback_webhooks)
        except UnsafeUrl as exc:
            errors.setdefault("Subscription.channel.endpoint", []).append(f"Refused: the URL {exc}.")
    if errors:
        raise Problem(422, "Unprocessable Content", "This Subscription cannot be made: " + ", ".join(sorted(errors)),
                      errors=errors)
    topic = TOPICS[kept["topic"]]
    if not policy.may_read(caller, topic["service"]):
        raise Problem(403, "Forbidden", f"The topic {kept['topic']} needs system/{topic['resource']}.r, which this "
                      "client was not granted.")
    endpoint = kept.pop("endpoint")
    at = now()
    row = dict(id=str(uuid.uuid4()), client_id=caller.client_id, url=endpoint, types=topic["types"],
               description=(kept["reason"] or "")[:500], secret=new_secret(), status="active", status_reason=None,
               replay_next=None, replay_until=None, version=1, created_at=at, updated_at=at, kind="fhir",
               fhir=dict(kept, base=base_url()), events_count=0)
    with ctx().db.session() as session:
        # from now on: events already in the change log are not this subscription's
        row["cursor"] = session.execute(select(func.max(change_log.c.position))).scalar_one() or 0
        session.execute(webhook_subscriptions.insert().values(**row))
    resource = subscription_resource(row, row["fhir"], base_url())
    resource.setdefault("extension", []).append({"url": EXT + "signing-secret", "valueString": row["secret"]})
    return fhir_json(resource, 201, {"Location": f"{base_url()}/Subscription/{row['id']}", "ETag": 'W/"1"'})


@bp.get("/Subscription")
def list_subscriptions():
    s = webhook_subscriptions
    with ctx().db.session() as session:
        rows = session.execute(select(s).where(s.c.client_id == policy.current().caller.client_id,
                                               s.c.kind == "fhir").order_by(s.c.created_at, s.c.id)).mappings().all()
    resources = [subscription_resource(r, r["fhir"], base_url()) for r in rows]
    return fhir_json(searchset(base_url(), resources, timestamp=timestamp(), self_url=f"{base_url()}/Subscription",
                               total=len(resources)))


@bp.get("/Subscription/<sub_id>")
def read_subscription_route(sub_id):
    with ctx().db.session() as session:
        row = _own(session, sub_id)
    return fhir_json(subscription_resource(row, row["fhir"], base_url()), headers={"ETag": f'W/"{row["version"]}"'})


@bp.delete("/Subscription/<sub_id>")
def delete_subscription(sub_id):
    with ctx().db.session() as session:
        _own(session, sub_id, for_update=True)
        session.execute(delete(webhook_attempts).where(webhook_attempts.c.subscription_id == sub_id))
        session.execute(delete(webhook_deliveries).where(webhook_deliveries.c.subscription_id == sub_id))
        session.execute(delete(webhook_subscriptions).where(webhook_subscriptions.c.id == sub_id))
    return "", 204


@bp.get("/Subscription/<sub_id>/$status")
def subscription_status(sub_id):
    with ctx().db.session() as session:
        row = _own(session, sub_id)
    status = status_parameters(sub_id, row["fhir"], row["status"], "query-status", row["events_count"],
                               base=base_url())
    return fhir_json(searchset(base_url(), [], timestamp=timestamp(), self_url=f"{base_url()}/Subscription/{sub_id}/$status",
                               outcomes=[]) | {"entry": [{"fullUrl": f"urn:uuid:{status['id']}", "resource": status,
                                                          "search": {"mode": "match"}}], "total": 1})


def _number(name: str, default: int) -> int:
    raw = request.args.get(name)
    if raw is None:
        return default
    if not raw.isdigit() or len(raw) > 18:
        raise Problem(400, "Bad Request", f"{name} is an event number.", errors={name: ["A whole number."]})
    return int(raw)


@bp.get("/Subscription/<sub_id>/$events")
def subscription_events(sub_id):
    """The events numbered eventsSinceNumber … eventsUntilNumber (at most 100), as a history Bundle,
    each checked for the caller now: one it may no longer see is left out (and counted)."""
    caller = policy.current().caller
    d = webhook_deliveries
    with ctx().db.session() as session:
        row = _own(session, sub_id)
        until = min(_number("eventsUntilNumber", row["events_count"]), row["events_count"])
        since = max(_number("eventsSinceNumber", max(1, until - MAX_EVENTS + 1)), 1)
        if until - since + 1 > MAX_EVENTS:
            raise Problem(400, "Bad Request", f"At most {MAX_EVENTS} events at once.",
                          errors={"eventsUntilNumber": [f"At most {MAX_EVENTS} after eventsSinceNumber."]})
        content = request.args.get("content", row["fhir"]["content"])
        if content not in ("empty", "id-only", "full-resource"):
            raise Problem(400, "Bad Request", "content is empty, id-only or full-resource.",
                          errors={"content": ["empty, id-only or full-resource"]})
        numbered = session.execute(
            select(d.c.event_number, d.c.subject, change_log.c.body).join(change_log, change_log.c.event_id == d.c.event_id)
            .where(d.c.subscription_id == sub_id, d.c.event_number >= since, d.c.event_number <= until)
            .order_by(d.c.event_number)).all()
        seen = policy.Visibility.of(session, caller, {n.subject for n in numbered})
    service = TOPICS[row["fhir"]["topic"]]["service"]
    shown = [n for n in numbered if seen.allows(n.subject, service)]
    also_audit(n.subject for n in shown)  # the people these events are about
    items, resources = [], []
    for n in shown:
        item, resource = event_entry(n.event_number, json.loads(n.body), content, base_url(),
                                     seen.allows(n.subject, "plans"))
        items.append(item)
        if resource:
            resources.append(resource)
    status = status_parameters(sub_id, row["fhir"], row["status"], "query-event", row["events_count"], items, base_url())
    bundle = notification_bundle(status, base_url(), sub_id, resources, timestamp(), operation="$events")
    headers = {"X-Withheld": str(len(numbered) - len(shown))}
    return fhir_json(bundle, headers=headers)
