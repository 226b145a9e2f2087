"""The audit trail: one record per access to a person's data, chained by SHA-256.

Each record's hash covers its own fields and the previous record's hash, and sequence numbers
have no gaps, so an edited, removed or inserted row breaks the chain at a place
``coproduction audit verify`` names.
"""
from __future__ import annotations

import hashlib
import json

from sqlalchemy import select, text
from sqlalchemy.orm import Session

from coproduction.events import iso, now

from .models import audit_log

GENESIS = "0" * 64
AUDIT_LOCK = 7_240_002
FIELDS = ("seq", "at", "client_id", "client_name", "org", "role", "scope", "nhs_number", "action",
          "resource", "purpose", "outcome", "status", "prev_hash")


#: what the access decision settled; in the hash when set (records from before they existed keep theirs)
DECISION_FIELDS = ("initiative", "relationship", "break_glass")


def _digest(row: dict) -> str:
    fields = {k: row[k] for k in FIELDS}
    fields.update({k: row[k] for k in DECISION_FIELDS if row.get(k)})
    canonical = json.dumps(fields, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(canonical.encode()).hexdigest()


def record(session: Session, *, caller, scope: str | None, nhs_number: str | None, action: str,
           resource: str, purpose: str, status: int, initiative: str | None = None,
           relationship: str | None = None, break_glass: bool = False) -> int:
    """Append one record inside the caller's transaction; return its sequence number."""
    if session.get_bind().dialect.name == "postgresql":
        session.execute(text("SELECT pg_advisory_xact_lock(:k)"), {"k": AUDIT_LOCK})
    last = session.execute(select(audit_log.c.seq, audit_log.c.hash).order_by(audit_log.c.seq.desc())
                           .limit(1)).first()
    row = {
        "seq": (last.seq + 1) if last else 1,
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
        "prev_hash": last.hash if last else GENESIS,
        "initiative": initiative,
        "relationship": relationship,
        "break_glass": bool(break_glass),
    }
    row["hash"] = _digest(row)
    session.execute(audit_log.insert(), row)  # bound parameters: the compiled statement is cached
    return row["seq"]


def to_json(row) -> dict:
    return {k: row[k] for k in (*FIELDS, *DECISION_FIELDS, "hash") if k != "prev_hash"}


def verify(session: Session) -> list[str]:
    """Every problem in the chain, naming the record; empty when the chain is whole."""
    problems = []
    prev_hash, expected_seq = GENESIS, 1
    for row in session.execute(select(audit_log).order_by(audit_log.c.seq)).mappings():
        if row["seq"] != expected_seq:
            problems.append(f"record {expected_seq} is missing (next is {row['seq']})")
        if row["prev_hash"] != prev_hash:
            problems.append(f"record {row['seq']} does not follow the record before it")
        if _digest(dict(row)) != row["hash"]:
            problems.append(f"record {row['seq']} was altered (its hash does not match its contents)")
        prev_hash, expected_seq = row["hash"], row["seq"] + 1
    return problems
