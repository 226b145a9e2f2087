"""The gateway's own tables: clients, the portfolio projection, the change log, audit, consent."""
from __future__ import annotations

from sqlalchemy import (JSON, Boolean, Column, DateTime, Index, Integer, MetaData, String, Table, Text,
                        UniqueConstraint)
from sqlalchemy.dialects.postgresql import JSONB

from coproduction.db import BigId
from coproduction.inbox import inbox_table

Json = JSON().with_variant(JSONB(), "postgresql")
metadata = MetaData()

clients = Table(
    "clients", metadata,
    Column("id", String(36), primary_key=True),
    Column("name", String(200), nullable=False),
    Column("org", String(20), nullable=False),
    Column("role", String(20), nullable=False),
    Column("scopes", Json, nullable=False),
    #: a development client's static token (its SHA-256); NULL for a client registered with keys
    Column("token_hash", String(64), unique=True),
    #: the public keys a client signs its OAuth assertions with: a JWK Set, or where to fetch one
    Column("jwks", Json),
    Column("jwks_uri", String(2000)),
    Column("created_at", DateTime(timezone=True), nullable=False),
    Column("revoked_at", DateTime(timezone=True)),
)

#: the jti of every client assertion accepted, kept until it expires: a replay is refused by every
#: gateway process and replica, since they share this table
oauth_assertions = Table(
    "oauth_assertions", metadata,
    Column("client_id", String(36), primary_key=True),
    Column("jti", String(255), primary_key=True),
    Column("expires_at", DateTime(timezone=True), nullable=False, index=True),
)

#: the newest state of every aggregate, as its newest event carried it
aggregates = Table(
    "aggregates", metadata,
    Column("service", String(20), primary_key=True),
    Column("aggregate_id", String(64), primary_key=True),
    Column("nhs_number", String(10), nullable=False, index=True),
    Column("kind", String(40), nullable=False),
    Column("version", Integer, nullable=False),
    Column("last_type", String(64), nullable=False),
    Column("state", Json, nullable=False),
    Column("event_time", DateTime(timezone=True), nullable=False),
    Column("applied_at", DateTime(timezone=True), nullable=False),
)

#: one materialised portfolio per person, rebuilt whenever one of their aggregates changes
portfolios = Table(
    "portfolios", metadata,
    Column("nhs_number", String(10), primary_key=True),
    Column("document", Json, nullable=False),
    Column("updated_at", DateTime(timezone=True), nullable=False),
)

#: every event applied, in the order the gateway applied it: the change feed and the timeline
change_log = Table(
    "change_log", metadata,
    Column("position", BigId, primary_key=True, autoincrement=True),
    Column("event_id", String(36), nullable=False, unique=True),
    Column("type", String(64), nullable=False),
    Column("subject", String(10), nullable=False),
    Column("event_time", DateTime(timezone=True), nullable=False),
    Column("body", Text, nullable=False),
    sqlite_autoincrement=True,  # positions never reused, even after a rebuild empties the table
)
Index("ix_change_log_subject", change_log.c.subject, change_log.c.position)

inbox = inbox_table(metadata)

#: one row per access to a person's data, allowed or refused, chained by hash
audit_log = Table(
    "audit_log", metadata,
    Column("seq", BigId, primary_key=True, autoincrement=False),
    Column("at", String(40), nullable=False),
    Column("client_id", String(36)),
    Column("client_name", String(200)),
    Column("org", String(20)),
    Column("role", String(20)),
    Column("scope", String(40)),
    Column("nhs_number", String(10), index=True),
    Column("action", String(20), nullable=False),
    Column("resource", String(300), nullable=False),
    Column("purpose", String(200), nullable=False),
    Column("outcome", String(20), nullable=False),
    Column("status", Integer, nullable=False),
    Column("prev_hash", String(64), nullable=False),
    Column("hash", String(64), nullable=False),
)

#: a person's sharing preferences: initiatives withheld from roles
sharing = Table(
    "sharing", metadata,
    Column("nhs_number", String(10), primary_key=True),
    Column("withhold", Json, nullable=False),
    Column("updated_at", DateTime(timezone=True), nullable=False),
    Column("updated_by", String(36), nullable=False),
)

# the webhook tables (subscriptions, deliveries, attempts) are defined in their own module
from . import webhook_models  # noqa: E402,F401
