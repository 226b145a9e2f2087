"""The gateway's webhook tables: subscriptions, their deliveries, and every attempt of each delivery.

They live on the gateway's own metadata (:mod:`gateway.models`, which knows nothing of webhooks), so
``coproduction migrate gateway`` creates them with the rest. A delivery is one change-log event for
one subscription; its id is the ``webhook-id`` the receiver sees, stable across retries.
"""
from __future__ import annotations

from sqlalchemy import BigInteger, Boolean, Column, DateTime, Index, Integer, String, Table, Text

from coproduction.db import BigId

from ..models import Json, metadata

#: statuses of a subscription: active (delivering), failing (a delivery used up its retry schedule;
#: deliveries wait for a replay), disabled (the receiver answered 410 Gone, or its client was revoked)
SUBSCRIPTION_STATUSES = ("active", "failing", "disabled")
#: statuses of a delivery: pending (not yet accepted by the receiver), delivered, withheld (the
#: person's sharing preferences or the client's scopes no longer allow it: never sent)
DELIVERY_STATUSES = ("pending", "delivered", "withheld")

webhook_subscriptions = Table(
    "webhook_subscriptions", metadata,
    Column("id", String(36), primary_key=True),
    Column("client_id", String(36), nullable=False, index=True),
    Column("url", Text, nullable=False),
    Column("types", Json, nullable=False),
    Column("description", String(500)),
    Column("secret", String(120), nullable=False),  # needed to sign, so kept (not hashed)
    Column("status", String(20), nullable=False),
    Column("status_reason", Text),
    #: the last change-log position fanned out into deliveries for this subscription
    Column("cursor", BigInteger, nullable=False),
    #: a replay in progress: positions (replay_next, replay_until] still to be fanned out again
    Column("replay_next", BigInteger),
    Column("replay_until", BigInteger),
    Column("version", Integer, nullable=False),
    Column("created_at", DateTime(timezone=True), nullable=False),
    Column("updated_at", DateTime(timezone=True), nullable=False),
    #: webhook (CloudEvents, /v1/subscriptions) or fhir (a Subscriptions Backport IG Subscription,
    #: /fhir/R4/Subscription: its topic, filter, payload content and channel headers in ``fhir``)
    Column("kind", String(20), nullable=False, server_default="webhook"),
    Column("fhir", Json),
    #: how many events were fanned out to it: a FHIR subscription's events are numbered 1, 2, …
    Column("events_count", BigInteger, nullable=False, server_default="0"),
)

webhook_deliveries = Table(
    "webhook_deliveries", metadata,
    Column("seq", BigId, primary_key=True, autoincrement=True),
    Column("id", String(36), nullable=False, unique=True),  # the webhook-id header
    Column("subscription_id", String(36), nullable=False),
    Column("position", BigInteger, nullable=False),  # change_log.position of the event
    Column("event_id", String(36), nullable=False),
    Column("type", String(64), nullable=False),
    Column("subject", String(10), nullable=False),
    Column("replay", Boolean, nullable=False),
    Column("status", String(20), nullable=False),
    Column("attempts", Integer, nullable=False),
    Column("retry_step", Integer, nullable=False),  # failures since the schedule last (re)started
    Column("next_attempt_at", DateTime(timezone=True)),
    Column("last_status_code", Integer),
    Column("last_error", Text),
    Column("created_at", DateTime(timezone=True), nullable=False),
    Column("delivered_at", DateTime(timezone=True)),
    Column("event_number", BigInteger),  # a FHIR subscription's event number (its $events)
)
Index("ix_webhook_deliveries_event_number", webhook_deliveries.c.subscription_id, webhook_deliveries.c.event_number)
Index("ix_webhook_deliveries_sub", webhook_deliveries.c.subscription_id, webhook_deliveries.c.seq)
Index("ix_webhook_deliveries_pending", webhook_deliveries.c.subscription_id, webhook_deliveries.c.subject,
      webhook_deliveries.c.position, postgresql_where=webhook_deliveries.c.status == "pending",
      sqlite_where=webhook_deliveries.c.status == "pending")

webhook_attempts = Table(
    "webhook_attempts", metadata,
    Column("id", BigId, primary_key=True, autoincrement=True),
    Column("delivery_id", String(36), nullable=False, index=True),
    Column("subscription_id", String(36), nullable=False),
    Column("attempt", Integer, nullable=False),
    Column("at", DateTime(timezone=True), nullable=False),
    Column("outcome", String(20), nullable=False),  # delivered | failed | gone | refused
    Column("status_code", Integer),
    Column("error", Text),
    Column("duration_ms", Integer, nullable=False),
    Column("next_attempt_at", DateTime(timezone=True)),
    Column("response", Text),  # the start of the receiver's answer, for whoever debugs it
)
