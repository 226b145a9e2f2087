"""The gateway's own tables: clients, the portfolio projection, the change log, audit, consent.

The webhook tables are declared on this ``metadata`` by gateway/webhooks/models.py, which the app
(and so every migration run) imports.
"""
from __future__ import annotations

from sqlalchemy import (JSON, BigInteger, Boolean, Column, DateTime, Index, Integer, LargeBinary, MetaData,
                        SmallInteger, String, Table, Text)
from sqlalchemy.dialects.postgresql import JSONB

from coproduction.db import BigId
from coproduction.idempotency import idempotency_table
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

#: one materialised portfolio per person, rebuilt whenever one of their aggregates changes, with
#: their newest changes as the admission summary shows them (gateway/portfolio.py, recent_changes)
portfolios = Table(
    "portfolios", metadata,
    Column("nhs_number", String(10), primary_key=True),
    Column("document", Json, nullable=False),
    Column("recent_changes", Json, nullable=False),
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
#: the Idempotency-Key of each create the gateway itself answers (POST /v1/subscriptions)
idempotency_keys = idempotency_table(metadata)

#: one row per access to a person's data, allowed or refused. A request only inserts (no lock, no
#: read); the sequencer (gateway/audit/sequencer.py) later gives the row its ``leaf_index`` in the Merkle
#: log, whose perfect subtrees and signed heads are the two tables below (docs/audit.md)
audit_log = Table(
    "audit_log", metadata,
    Column("id", BigId, primary_key=True, autoincrement=True),
    Column("at", String(40), nullable=False),
    Column("client_id", String(36)),
    Column("client_name", String(200)),
    Column("org", String(20)),
    Column("role", String(20)),
    Column("scope", String(40)),
    Column("nhs_number", String(10)),
    Column("action", String(20), nullable=False),
    Column("resource", String(300), nullable=False),
    Column("purpose", String(200), nullable=False),
    Column("outcome", String(20), nullable=False),
    Column("status", Integer, nullable=False),
    Column("initiative", String(20)),
    Column("break_glass", Boolean, nullable=False),
    Column("relationship", String(40)),
    Column("leaf_index", BigInteger),
    sqlite_autoincrement=True,  # ids never reused, even after the newest rows are deleted
)
Index("ix_audit_log_person", audit_log.c.nhs_number, audit_log.c.id)
#: the sequencer's work list: only rows still waiting for a leaf index are in it
Index("ix_audit_log_unsequenced", audit_log.c.id, postgresql_where=audit_log.c.leaf_index.is_(None),
      sqlite_where=audit_log.c.leaf_index.is_(None))
#: partial, so an insert (leaf_index NULL) does not touch it
Index("ux_audit_log_leaf_index", audit_log.c.leaf_index, unique=True,
      postgresql_where=audit_log.c.leaf_index.isnot(None), sqlite_where=audit_log.c.leaf_index.isnot(None))

#: every complete (perfect) subtree of the log: level 0 holds the leaf hashes; (level, idx) covers
#: the leaves [idx * 2**level, (idx + 1) * 2**level). Any proof is a fold of O(log n) of these per hash.
audit_tree_nodes = Table(
    "audit_tree_nodes", metadata,
    Column("level", SmallInteger, primary_key=True, autoincrement=False),
    Column("idx", BigInteger, primary_key=True, autoincrement=False),
    Column("hash", LargeBinary(32), nullable=False),
)

#: one signed tree head per sequenced batch (RFC 9162 TreeHeadDataV2, Ed25519)
audit_tree_heads = Table(
    "audit_tree_heads", metadata,
    Column("tree_size", BigInteger, primary_key=True, autoincrement=False),
    Column("timestamp", BigInteger, nullable=False),  # milliseconds since the epoch, as signed
    Column("root_hash", LargeBinary(32), nullable=False),
    Column("signature", LargeBinary(64), nullable=False),
    Column("key_id", String(64), nullable=False),
)

#: a person's sharing preferences: initiatives withheld from roles
sharing = Table(
    "sharing", metadata,
    Column("nhs_number", String(10), primary_key=True),
    Column("withhold", Json, nullable=False),
    Column("updated_at", DateTime(timezone=True), nullable=False),
    Column("updated_by", String(36), nullable=False),
)

#: every change of a person's sharing preferences: who set them, and on whose behalf
sharing_history = Table(
    "sharing_history", metadata,
    Column("id", BigId, primary_key=True, autoincrement=True),
    Column("nhs_number", String(10), nullable=False, index=True),
    Column("withhold", Json, nullable=False),
    Column("set_at", DateTime(timezone=True), nullable=False),
    Column("set_by_client", String(36), nullable=False),
    Column("set_by_name", String(200), nullable=False),
    Column("set_by_org", String(20), nullable=False),
    Column("set_by_role", String(20), nullable=False),
    Column("on_behalf_of", String(20), nullable=False),  # person | representative
    Column("representative", String(200)),
    Column("note", String(500)),
    sqlite_autoincrement=True,
)

#: resource -> person: whose record each resource is, kept from the events and from the creates the
#: gateway forwarded, so a request naming a resource is settled before anything is forwarded
subjects = Table(
    "subjects", metadata,
    Column("service", String(20), primary_key=True),
    Column("resource_id", String(64), primary_key=True),
    Column("nhs_number", String(10), nullable=False),
    Column("recorded_at", DateTime(timezone=True), nullable=False),
)
Index("ix_subjects_person", subjects.c.nhs_number, subjects.c.service)

#: care relationships (legitimate relationships): an organisation reads or changes a person's
#: record only while it has one. Held ones come from the records it created (one row per person,
#: organisation and kind); declared ones (an admission, emergency access) are time-limited
care_relationships = Table(
    "care_relationships", metadata,
    Column("id", String(36), primary_key=True),
    Column("nhs_number", String(10), nullable=False),
    Column("org", String(20), nullable=False),
    Column("kind", String(20), nullable=False),
    Column("source", String(20), nullable=False),  # event | create | declared
    Column("role", String(20)),
    Column("client_id", String(36)),
    Column("client_name", String(200)),
    Column("resource_id", String(64)),
    Column("encounter_id", String(100)),
    Column("reason", String(500)),
    Column("started_at", DateTime(timezone=True), nullable=False),
    Column("expires_at", DateTime(timezone=True)),
    Column("ended_at", DateTime(timezone=True)),
    Column("ended_by", String(36)),
)
Index("ix_care_relationships_person_org", care_relationships.c.nhs_number, care_relationships.c.org)
Index("ix_care_relationships_declared", care_relationships.c.source, care_relationships.c.started_at)
