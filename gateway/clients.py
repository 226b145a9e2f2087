"""Client credentials: a token shown once, only its hash stored; scopes from a role preset."""
from __future__ import annotations

import hashlib
import secrets
import uuid

from sqlalchemy import select, update

from coproduction.auth import ROLES, SCOPES, Caller
from coproduction.db import Database
from coproduction.events import iso, now

from .models import clients

TOKEN_PREFIX = "cpt_"


def token_hash(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def create(db: Database, name: str, org: str, role: str, extra: list[str] = (), without: list[str] = ()) -> tuple[str, str]:
    """Create a client; return (client id, token). The token is never stored."""
    if role not in ROLES:
        raise ValueError(f"unknown role {role!r}; one of {', '.join(ROLES)}")
    unknown = [s for s in (*extra, *without) if s not in SCOPES]
    if unknown:
        raise ValueError(f"unknown scopes: {', '.join(unknown)}")
    scopes = sorted((set(ROLES[role]) | set(extra)) - set(without))
    token = TOKEN_PREFIX + secrets.token_urlsafe(32)
    client_id = str(uuid.uuid4())
    with db.session() as s:
        s.execute(clients.insert().values(id=client_id, name=name, org=org, role=role, scopes=scopes,
                                          token_hash=token_hash(token), created_at=now()))
    return client_id, token


def listing(db: Database) -> list[dict]:
    with db.session() as s:
        rows = s.execute(select(clients).order_by(clients.c.created_at)).mappings().all()
    return [{"id": r["id"], "name": r["name"], "org": r["org"], "role": r["role"], "scopes": r["scopes"],
             "created_at": iso(r["created_at"]), "revoked_at": iso(r["revoked_at"]) if r["revoked_at"] else None}
            for r in rows]


def revoke(db: Database, client_id: str) -> bool:
    with db.session() as s:
        result = s.execute(update(clients).where(clients.c.id == client_id, clients.c.revoked_at.is_(None))
                           .values(revoked_at=now()))
    return result.rowcount == 1


def authenticate(db: Database, token: str) -> Caller | None:
    with db.session() as session:
        return lookup(session, token)


def lookup(session, token: str) -> Caller | None:
    """The client a token belongs to, unless it is unknown or revoked (in the caller's transaction)."""
    row = session.execute(select(clients).where(clients.c.token_hash == token_hash(token))).mappings().first()
    if row is None or row["revoked_at"] is not None:
        return None
    return Caller(row["id"], row["name"], row["org"], row["role"], frozenset(row["scopes"]))
