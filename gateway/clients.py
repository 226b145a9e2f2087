"""Clients of the gateway: their role, organisation and scopes (from a role preset), and how they
prove who they are. A client registered with public keys (a JWK Set, or the URL of one) gets OAuth
access tokens from ``POST /oauth2/token`` (gateway/oauth.py); a development client has a static
token instead, shown once, only its hash stored (accepted only with ALLOW_STATIC_TOKENS)."""
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


def _scopes(role: str, extra, without) -> list[str]:
    if role not in ROLES:
        raise ValueError(f"unknown role {role!r}; one of {', '.join(ROLES)}")
    unknown = [s for s in (*extra, *without) if s not in SCOPES]
    if unknown:
        raise ValueError(f"unknown scopes: {', '.join(unknown)}")
    return sorted((set(ROLES[role]) | set(extra)) - set(without))


def create(db: Database, name: str, org: str, role: str, extra: list[str] = (), without: list[str] = ()) -> tuple[str, str]:
    """Create a development client with a static token; return (client id, token). The token is
    never stored."""
    scopes = _scopes(role, extra, without)
    token = TOKEN_PREFIX + secrets.token_urlsafe(32)
    client_id = str(uuid.uuid4())
    with db.session() as s:
        s.execute(clients.insert().values(id=client_id, name=name, org=org, role=role, scopes=scopes,
                                          token_hash=token_hash(token), created_at=now()))
    return client_id, token


def register(db: Database, name: str, org: str, role: str, *, jwks: dict | None = None,
             jwks_uri: str | None = None, extra: list[str] = (), without: list[str] = ()) -> str:
    """Register a client that authenticates with its keys (a checked public JWK Set, or the URL of
    one, checked by the caller); return its client_id."""
    if (jwks is None) == (jwks_uri is None):
        raise ValueError("register a client with a JWK Set or a jwks_uri (one of them)")
    scopes = _scopes(role, extra, without)
    client_id = str(uuid.uuid4())
    with db.session() as s:
        s.execute(clients.insert().values(id=client_id, name=name, org=org, role=role, scopes=scopes,
                                          jwks=jwks, jwks_uri=jwks_uri, created_at=now()))
    return client_id


def find(session, client_id: str):
    """A client's row (a mapping), revoked or not; None if there is no such client."""
    return session.execute(select(clients).where(clients.c.id == client_id)).mappings().first()


def listing(db: Database) -> list[dict]:
    with db.session() as s:
        rows = s.execute(select(clients).order_by(clients.c.created_at)).mappings().all()
    return [{"id": r["id"], "name": r["name"], "org": r["org"], "role": r["role"], "scopes": r["scopes"],
             "authentication": "static token" if r["token_hash"] else "private_key_jwt",
             **({"jwks_uri": r["jwks_uri"]} if r["jwks_uri"] else {}),
             **({"kids": [k.get("kid") for k in r["jwks"]["keys"]]} if r["jwks"] else {}),
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
    return as_caller(row)


def as_caller(row) -> Caller:
    return Caller(row["id"], row["name"], row["org"], row["role"], frozenset(row["scopes"]))
