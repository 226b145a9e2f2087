"""The audit trail: one record per access to a person's data, appended to a Merkle transparency log.

A request only inserts its record, in its own transaction: no lock, no read of any other record.
The sequencer (:mod:`gateway.audit.sequencer`) then gives committed records their leaf index in the
RFC 9162 Merkle tree and signs a tree head; :mod:`gateway.audit.verify` checks the whole log
against a witness. docs/audit.md describes the log and how anyone checks a proof.
"""
from __future__ import annotations

import json

from sqlalchemy import bindparam
from sqlalchemy.orm import Session

from coproduction.db import Prepared
from coproduction.events import iso, now
from coproduction.service import service_names

from ..models import audit_log
from . import merkle

#: the fields a leaf commits to. A field whose value is null is left out of the leaf, so a column
#: added later (null in older rows) leaves every older leaf's bytes unchanged.
LEAF_FIELDS = ("id", "at", "client_id", "client_name", "org", "role", "scope", "nhs_number", "action",
               "resource", "purpose", "outcome", "status", "initiative", "break_glass", "relationship")
INITIATIVES = (*service_names(), "portfolio")
#: built once: a request binds its row's values; the id comes back in the same round trip
APPEND = Prepared(audit_log.insert().values({c.name: bindparam(c.name, type_=c.type) for c in audit_log.c
                                             if c.name not in ("id", "leaf_index")}).returning(audit_log.c.id))


def record(session: Session, *, caller, scope: str | None, nhs_number: str | None, action: str,
           resource: str, purpose: str, status: int, initiative: str | None = None,
           break_glass: bool = False, relationship: str | None = None) -> int:
    """Append one record inside the caller's transaction (one INSERT); return its id.

    ``initiative`` is the part of the person's record reached (one of :data:`INITIATIVES`, or None
    when the access is not to one part); ``break_glass`` marks an emergency access outside the
    usual rules; ``relationship`` names the kind of care relationship that justified the access
    (e.g. "plan", "admission", "emergency")."""
    if initiative is not None and initiative not in INITIATIVES:
        raise ValueError(f"initiative must be one of {INITIATIVES} or None, not {initiative!r}")
    row = {
        "at": iso(now()),
        "client_id": getattr(caller, "client_id", None),
        "client_name": getattr(caller, "name", None),
        "org": getattr(caller, "org", None),
        "role": getattr(caller, "role", None),
        "scope": scope,
        "nhs_number": nhs_number,
        "action": action,
        "resource": resource[:300],
        "purpose": (purpose or "direct care")[:200],
        "outcome": "allowed" if status < 400 else ("refused" if status in (401, 403) else "failed"),
        "status": status,
        "initiative": initiative,
        "break_glass": bool(break_glass),
        "relationship": relationship[:40] if relationship else None,
    }
    return APPEND.run(session, row).id


def leaf_bytes(row) -> bytes:
    """The leaf the log commits to: the record as canonical JSON (RFC 8785 for these types:
    keys sorted, no whitespace, UTF-8), nulls left out."""
    fields = {k: row[k] for k in LEAF_FIELDS if row[k] is not None}
    fields["break_glass"] = bool(fields.get("break_glass", False))
    return json.dumps(fields, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()


def leaf_hash_of(row) -> bytes:
    return merkle.leaf_hash(leaf_bytes(row))


def to_json(row) -> dict:
    """A record as the API shows it: every leaf field, and its leaf index (null until sequenced)."""
    out = {k: row[k] for k in LEAF_FIELDS}
    out["break_glass"] = bool(out["break_glass"])
    out["leaf_index"] = row["leaf_index"]
    return out
