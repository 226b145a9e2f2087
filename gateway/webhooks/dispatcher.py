"""The webhook dispatcher (``coproduction deliver``): the change log out to subscribers' URLs.

One loop, in its own process, never in a web request:

1. **Fan out.** For each subscription that is not disabled, read the gateway's ``change_log``
   after the subscription's cursor and create one delivery per event whose type matches one of the
   subscription's patterns (``fnmatch`` style: ``budget.*``), in position order, moving the cursor
   in the same transaction. A replay (``POST /v1/subscriptions/{id}/replay``) is fanned out the
   same way from the cursor it names.
2. **Send.** For each active subscription and each person (the event's subject) the oldest pending
   delivery is the only one that may be sent: a failing delivery for one person holds back that
   person's later deliveries and nobody else's. Due heads are sent from a small thread pool.
3. **Record.** Every attempt is stored (time, status code or error, duration, next attempt). A 2xx
   delivers. Anything else is a failure retried after a full-jitter delay drawn from the schedule
   (``Retry-After`` is honoured); 3xx is a failure (redirects are never followed); a timeout is a
   failure; 410 Gone disables the subscription. When a delivery has used up the schedule the
   subscription is marked ``failing``: nothing is dropped, its deliveries wait for a replay.

Requests follow the Standard Webhooks spec: ``webhook-id`` (the delivery id, the same on every
retry), ``webhook-timestamp`` and ``webhook-signature: v1,<base64 HMAC-SHA256 of id.timestamp.body>``
keyed with the base64-decoded part of the subscription's ``whsec_`` secret; the body is the
CloudEvent exactly as the gateway stored it.

Callback addresses are checked at registration and again at every send: the host is resolved,
every address must be public (loopback only when ALLOW_LOOPBACK_WEBHOOKS=1), and the connection is
made to the address that was checked, so DNS cannot be re-pointed between check and use
(transport.py).

On PostgreSQL a dispatcher holds a session advisory lock while it works; a second one started for
availability waits until the first goes away.
"""
from __future__ import annotations

import json
import logging
import random
import ssl
import threading
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime, timedelta

from prometheus_client import Counter, Gauge
from sqlalchemy import and_, func, select, text, update

from coproduction.auth import Caller
from coproduction.config import Settings
from coproduction.db import Database
from coproduction.events import now

from .. import audit
from ..models import change_log, clients
from ..policy import Visibility, scrub_value
from .config import DeliveryConfig
from .models import webhook_attempts, webhook_deliveries, webhook_subscriptions
from .patterns import service_of, wanted_by
from .signing import sign
from .transport import RESPONSE_KEPT, Result, post

log = logging.getLogger(__name__)

ATTEMPTS = Counter("coproduction_webhook_attempts_total", "Webhook delivery attempts", ["outcome"])
PENDING = Gauge("coproduction_webhook_due", "Webhook deliveries due for an attempt at the last poll")

LEADER_LOCK = 7_240_003


# -- the dispatcher -----------------------------------------------------------------------------
class Dispatcher:
    def __init__(self, db: Database, config: DeliveryConfig | None = None,
                 tls_context: ssl.SSLContext | None = None):
        self.db = db
        self.config = config or DeliveryConfig()
        self.tls_context = tls_context
        self.stopping = threading.Event()
        self.ready = threading.Event()
        self._pool = ThreadPoolExecutor(self.config.concurrency, thread_name_prefix="webhook")
        self._in_flight: dict[int, str] = {}  # delivery seq -> subscription id
        self._lock = threading.Lock()
        self._wake = threading.Event()
        self._leader = None
        self._leading = False

    def stop(self) -> None:
        self.stopping.set()
        self._wake.set()

    # -- loop ------------------------------------------------------------------------------
    def run(self) -> None:
        delay = 0.2
        standing_by = False
        while not self.stopping.is_set():
            try:
                if not self._lead():
                    if not standing_by:
                        log.info("another dispatcher holds the lock; standing by")
                        standing_by = True
                    self.stopping.wait(max(self.config.poll_interval, 1.0))
                    continue
                standing_by = False
                self.ready.set()
                busy = self.run_once()
                delay = 0.2
                if not busy:
                    self._wake.wait(self.config.poll_interval)
                    self._wake.clear()
            except Exception as exc:  # database down: keep everything, try again later
                log.warning("dispatcher: %s; retrying in %.1fs", exc, delay)
                self._drop_leader()
                self.stopping.wait(delay)
                delay = min(delay * 2, 10.0)
        self._pool.shutdown(wait=True, cancel_futures=True)
        self._drop_leader()

    def run_once(self) -> bool:
        """Fan out new events and replays, start due sends; True if anything was done."""
        fanned = self.fan_out()
        started = self.dispatch()
        return bool(fanned or started)

    def _lead(self) -> bool:
        """On PostgreSQL, hold a session advisory lock: one dispatcher works, others stand by."""
        if not self.db.is_postgres:
            return True
        if self._leader is None:
            self._leader = self.db.engine.connect().execution_options(isolation_level="AUTOCOMMIT")
            self._leading = False
        if self._leading:  # the lock lives as long as this connection: check that it still does
            self._leader.execute(text("SELECT 1"))
            return True
        self._leading = bool(self._leader.execute(
            text("SELECT pg_try_advisory_lock(hashtext(current_schema()), :k)"),
            {"k": LEADER_LOCK}).scalar_one())
        return self._leading

    def _drop_leader(self) -> None:
        if self._leader is not None:
            try:
                self._leader.invalidate()
                self._leader.close()
            except Exception:
                pass
            self._leader = None
        self._leading = False

    # -- fan out -----------------------------------------------------------------------------
    def fan_out(self) -> int:
        s, d = webhook_subscriptions, webhook_deliveries
        with self.db.session() as session:
            top = session.execute(select(func.max(change_log.c.position))).scalar_one() or 0
            todo = session.execute(
                select(s.c.id).where(s.c.status != "disabled",
                                     (s.c.cursor < top) | s.c.replay_until.is_not(None))).scalars().all()
        created = 0
        for sub_id in todo:
            with self.db.session() as session:
                sub = session.execute(select(s).where(s.c.id == sub_id).with_for_update()).mappings().first()
                if sub is None or sub["status"] == "disabled":
                    continue
                if sub["replay_until"] is not None:
                    created += self._fan_out_replay(session, sub)
                if sub["cursor"] < top:
                    rows = session.execute(
                        select(change_log.c.position, change_log.c.event_id, change_log.c.type,
                               change_log.c.subject)
                        .where(change_log.c.position > sub["cursor"]).order_by(change_log.c.position)
                        .limit(self.config.batch)).all()
                    new = [r for r in rows if wanted_by(sub, r)]
                    if new:  # once per event and subscription, even if the change log is rebuilt
                        seen = set(session.execute(
                            select(d.c.event_id).where(d.c.subscription_id == sub_id,
                                                       d.c.event_id.in_([r.event_id for r in new]))).scalars())
                        new = [r for r in new if r.event_id not in seen]
                    self._insert(session, sub, new, replay=False)
                    created += len(new)
                    if rows:
                        session.execute(update(s).where(s.c.id == sub_id).values(cursor=rows[-1].position))
        if created:
            log.info("fanned out %d deliveries", created)
        return created

    def _fan_out_replay(self, session, sub) -> int:
        s, d = webhook_subscriptions, webhook_deliveries
        rows = session.execute(
            select(change_log.c.position, change_log.c.event_id, change_log.c.type, change_log.c.subject)
            .where(change_log.c.position > sub["replay_next"], change_log.c.position <= sub["replay_until"])
            .order_by(change_log.c.position).limit(self.config.batch)).all()
        wanted = [r for r in rows if wanted_by(sub, r)]
        if wanted:
            waiting = set(session.execute(
                select(d.c.event_id).where(d.c.subscription_id == sub["id"], d.c.status == "pending",
                                           d.c.event_id.in_([r.event_id for r in wanted]))).scalars())
            wanted = [r for r in wanted if r.event_id not in waiting]  # already on its way
        self._insert(session, sub, wanted, replay=True)
        if len(rows) < self.config.batch:
            session.execute(update(s).where(s.c.id == sub["id"]).values(replay_next=None, replay_until=None))
        else:
            session.execute(update(s).where(s.c.id == sub["id"]).values(replay_next=rows[-1].position))
        return len(wanted)

    def _insert(self, session, sub, rows, replay: bool) -> None:
        if not rows:
            return
        at = now()
        numbered = sub["kind"] == "fhir"  # a FHIR subscription numbers its events 1, 2, … ($events)
        first = session.execute(select(webhook_subscriptions.c.events_count)
                                .where(webhook_subscriptions.c.id == sub["id"])).scalar_one() + 1
        session.execute(webhook_deliveries.insert(), [
            dict(id=str(uuid.uuid4()), subscription_id=sub["id"], position=r.position, event_id=r.event_id,
                 type=r.type, subject=r.subject, replay=replay, status="pending", attempts=0, retry_step=0,
                 next_attempt_at=at, created_at=at, event_number=first + n if numbered else None)
            for n, r in enumerate(rows)])
        if numbered:
            session.execute(update(webhook_subscriptions).where(webhook_subscriptions.c.id == sub["id"])
                            .values(events_count=first + len(rows) - 1))

    # -- send --------------------------------------------------------------------------------
    def due(self, limit: int = 500) -> list[tuple[int, str]]:
        """(seq, subscription id) of each person's oldest pending delivery that is due, per active
        subscription."""
        s, d = webhook_subscriptions, webhook_deliveries
        head = func.row_number().over(partition_by=(d.c.subscription_id, d.c.subject),
                                      order_by=(d.c.position, d.c.seq)).label("head")
        pending = (select(d.c.seq, d.c.subscription_id, d.c.next_attempt_at, head)
                   .join(s, and_(s.c.id == d.c.subscription_id, s.c.status == "active"))
                   .where(d.c.status == "pending").subquery())
        with self.db.session() as session:
            rows = session.execute(
                select(pending.c.seq, pending.c.subscription_id)
                .where(pending.c.head == 1, pending.c.next_attempt_at <= now())
                .order_by(pending.c.next_attempt_at, pending.c.seq).limit(limit)).all()
        return [(r.seq, r.subscription_id) for r in rows]

    def dispatch(self) -> int:
        due = self.due()
        PENDING.set(len(due))
        started = 0
        with self._lock:
            per_sub: dict[str, int] = {}
            for sub_id in self._in_flight.values():
                per_sub[sub_id] = per_sub.get(sub_id, 0) + 1
            for seq, sub_id in due:
                if seq in self._in_flight or len(self._in_flight) >= self.config.concurrency:
                    continue
                if per_sub.get(sub_id, 0) >= self.config.per_subscription:
                    continue
                self._in_flight[seq] = sub_id
                per_sub[sub_id] = per_sub.get(sub_id, 0) + 1
                self._pool.submit(self._send_guarded, seq)
                started += 1
        return started

    def _send_guarded(self, seq: int) -> None:
        try:
            self.send(seq)
        except Exception:
            log.exception("webhook delivery %s: could not be recorded; it stays pending", seq)
        finally:
            with self._lock:
                self._in_flight.pop(seq, None)
            self._wake.set()  # the next delivery for this person may now go

    def send(self, seq: int) -> Result | None:
        """One attempt of one delivery, recorded; None if it was not to be sent after all."""
        s, d = webhook_subscriptions, webhook_deliveries
        with self.db.session() as session:
            row = session.execute(
                select(d, s.c.url, s.c.secret, s.c.status.label("sub_status"), s.c.client_id, s.c.kind, s.c.fhir,
                       s.c.events_count)
                .join(s, s.c.id == d.c.subscription_id)
                .where(d.c.seq == seq, d.c.next_attempt_at <= now())).mappings().first()
            # gone, delivered, or rescheduled since the list of due deliveries was read
            if row is None or row["status"] != "pending" or row["sub_status"] != "active":
                return None
            body = session.execute(select(change_log.c.body).where(change_log.c.event_id == row["event_id"])
                                   ).scalar_one_or_none()
            client = session.execute(select(clients).where(clients.c.id == row["client_id"])).mappings().first()
            if client is None or client["revoked_at"] is not None:
                session.execute(update(s).where(s.c.id == row["subscription_id"]).values(
                    status="disabled", status_reason="the subscribing client was revoked", updated_at=now()))
                return None
            caller = Caller(client["id"], client["name"], client["org"], client["role"],
                            frozenset(client["scopes"]), "webhook subscription")
            if body is None:  # the change log is being rebuilt: the event comes back, wait for it
                log.warning("webhook %s: event %s not in the change log; trying again shortly",
                            row["id"], row["event_id"])
                session.execute(update(d).where(d.c.seq == seq).values(
                    next_attempt_at=now() + timedelta(seconds=5)))
                return None
            reason = self._not_allowed(session, caller, row["type"], row["subject"])
            if reason:
                session.execute(update(d).where(d.c.seq == seq).values(status="withheld", last_error=reason))
                return None
            hidden = Visibility.of(session, caller, [row["subject"]]).hidden_ids(session, [row["subject"]])
            if hidden[row["subject"]]:  # what the event refers to that the receiver may not see
                body = json.dumps(scrub_value(json.loads(body), hidden[row["subject"]]))
            headers, payload = {}, body.encode()
            if row["kind"] == "fhir":  # the event as a Subscriptions Backport IG notification Bundle
                from ..fhir.notifications import notification
                headers, payload = notification(session, row, body, caller)
        timestamp = int(time.time())
        headers.update({"webhook-id": row["id"], "webhook-timestamp": str(timestamp),
                        "webhook-signature": sign(row["secret"], row["id"], timestamp, payload)})
        at = now()
        result = post(row["url"], headers, payload, timeout=self.config.timeout,
                      allow_loopback=self.config.allow_loopback, tls_context=self.tls_context)
        ATTEMPTS.labels(result.outcome).inc()
        self._record(row, caller, at, result)
        return result

    def _not_allowed(self, session, caller: Caller, type_: str, subject: str) -> str | None:
        service = service_of(type_)
        if service is None:
            return f"the gateway no longer knows the event type {type_}"
        if not caller.has(f"{service}:read"):
            return f"the subscribing client no longer holds {service}:read"
        seen = Visibility.of(session, caller, [subject])
        if caller.role != "admin" and subject not in seen.related:
            return f"the subscribing organisation ({caller.org}) has no care relationship with the person"
        if not seen.allows(subject, service):
            return (f"the person has chosen not to share their {service} with "
                    f"{caller.role.replace('_', ' ')} organisations")
        return None

    def _record(self, row, caller: Caller, at: datetime, result: Result) -> None:
        s, d = webhook_subscriptions, webhook_deliveries
        attempt = row["attempts"] + 1
        values = dict(attempts=attempt, last_status_code=result.status_code, last_error=result.error)
        next_at = None
        sub_change = None
        if result.outcome == "delivered":
            values.update(status="delivered", delivered_at=now(), next_attempt_at=None, last_error=None)
        elif result.outcome == "gone":
            values.update(next_attempt_at=None)
            sub_change = dict(status="disabled", status_reason=(
                f"the receiver answered 410 Gone to delivery {row['id']} at {at.isoformat()}; "
                "deliveries are kept: a replay re-enables the subscription"))
        else:
            step = row["retry_step"]
            schedule = self.config.schedule
            if step >= len(schedule):
                values.update(next_attempt_at=None)
                sub_change = dict(status="failing", status_reason=(
                    f"delivery {row['id']} failed {attempt} times over the whole retry schedule "
                    f"(last: {result.error}); nothing is dropped: fix the receiver, then replay"))
            else:
                delay = random.uniform(0, schedule[step])  # full jitter
                if result.retry_after is not None:
                    delay = max(delay, min(result.retry_after, self.config.max_retry_after))
                next_at = now() + timedelta(seconds=delay)
                values.update(next_attempt_at=next_at, retry_step=step + 1)
        with self.db.session() as session:
            current = session.execute(select(s.c.status).where(s.c.id == row["subscription_id"])
                                      .with_for_update()).scalar_one_or_none()
            if current is None:  # deleted while the request was in flight
                return
            session.execute(webhook_attempts.insert().values(
                delivery_id=row["id"], subscription_id=row["subscription_id"], attempt=attempt, at=at,
                outcome=result.outcome, status_code=result.status_code, error=result.error,
                duration_ms=result.duration_ms, next_attempt_at=next_at,
                response=(result.response or None) and result.response[:RESPONSE_KEPT]))
            session.execute(update(d).where(d.c.seq == row["seq"], d.c.status == "pending").values(**values))
            if sub_change and current == "active":
                session.execute(update(s).where(s.c.id == row["subscription_id"])
                                .values(updated_at=now(), version=s.c.version + 1, **sub_change))
            if result.sent:  # the person's data reached the receiver: an access, audited
                service = service_of(row["type"]) or "unknown"
                audit.record(session, caller=caller, scope=f"{service}:read", nhs_number=row["subject"],
                             action="WEBHOOK",
                             resource=f"/v1/subscriptions/{row['subscription_id']}/deliveries/{row['id']}",
                             purpose="webhook subscription", status=result.status_code or 504)
        log.info("webhook %s %s -> %s", row["id"], row["type"], result.status_code or result.error,
                 extra={"event_id": row["event_id"], "subscription": row["subscription_id"],
                        "outcome": result.outcome, "attempt": attempt})


def make_dispatcher(settings: Settings, db: Database) -> Dispatcher:
    return Dispatcher(db, DeliveryConfig.from_env(settings))
