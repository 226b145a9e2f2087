"""Scopes, roles, and the short-lived signed token the gateway forwards to each service.

Clients authenticate at the gateway with their own bearer token. The gateway then calls a service
with a JWT (HS256, SERVICE_TOKEN_SECRET, 60 s, audience = the service) that carries the client's
identity and scopes. Each service checks that token and the scope of every route itself, so a
service reached directly without one refuses.
"""
from __future__ import annotations

import functools
import time
from dataclasses import dataclass

import jwt
from flask import g, request

from .http import Problem, ctx

SCOPES = (
    "portfolio:read", "plans:read", "plans:write", "budgets:read", "budgets:write",
    "decisions:read", "decisions:write", "groups:read", "groups:write",
    "groups:roster", "subscriptions:manage", "audit:read", "admin",
)
ROLES = {
    "hospital": ("portfolio:read", "plans:read", "budgets:read", "decisions:read", "decisions:write",
                 "groups:read"),
    "gp": ("portfolio:read", "plans:read", "plans:write", "budgets:read", "decisions:read",
           "decisions:write", "groups:read"),
    "social_care": ("portfolio:read", "plans:read", "budgets:read", "budgets:write",
                    "subscriptions:manage"),
    "community": ("portfolio:read", "groups:read", "groups:write", "groups:roster"),
    "admin": SCOPES,
}
TOKEN_LIFETIME = 60
ISSUER = "coproduction-gateway"


@dataclass(frozen=True)
class Caller:
    client_id: str
    name: str
    org: str
    role: str
    scopes: frozenset[str]
    purpose: str = "direct care"

    def has(self, scope: str) -> bool:
        return scope in self.scopes or "admin" in self.scopes


def issue_service_token(caller: Caller, audience: str, secret: str, lifetime: int = TOKEN_LIFETIME) -> str:
    now = int(time.time())
    claims = {
        "iss": ISSUER, "aud": audience, "iat": now, "exp": now + lifetime,
        "sub": caller.client_id, "name": caller.name, "org": caller.org, "role": caller.role,
        "scopes": sorted(caller.scopes), "purpose": caller.purpose,
    }
    return jwt.encode(claims, secret, algorithm="HS256")


def verify_service_token(token: str, audience: str, secret: str) -> Caller:
    claims = jwt.decode(token, secret, algorithms=["HS256"], audience=audience, issuer=ISSUER,
                        options={"require": ["exp", "iat", "aud", "iss", "sub"]})
    return Caller(claims["sub"], claims.get("name", ""), claims.get("org", ""), claims.get("role", ""),
                  frozenset(claims.get("scopes", [])), claims.get("purpose", "direct care"))


def bearer_token(header: str) -> str | None:
    """The token of an ``Authorization: Bearer <token>`` header; the scheme in any letter case (RFC 7235)."""
    scheme, _, token = header.strip().partition(" ")
    token = token.strip()
    return token if scheme.lower() == "bearer" and token else None


def unauthorised(detail: str) -> Problem:
    return Problem(401, "Unauthorized", detail, headers={"WWW-Authenticate": 'Bearer realm="coproduction"'})


def service_caller() -> Caller:
    """The caller of a service request, from the gateway's signed token (401 if absent or bad)."""
    cached = g.get("caller")
    if cached is not None:
        return cached
    token = bearer_token(request.headers.get("Authorization", ""))
    if token is None:
        raise unauthorised("A bearer token is required.")
    service = ctx()
    try:
        caller = verify_service_token(token, service.name, service.settings.service_token_secret)
    except jwt.ExpiredSignatureError:
        raise unauthorised("The service token has expired.")
    except jwt.PyJWTError:
        raise unauthorised("The bearer token is not valid for this service.")
    g.caller = caller
    return caller


def requires(scope: str):
    """Route decorator: the caller must hold ``scope`` (or admin)."""
    def wrap(view):
        @functools.wraps(view)
        def inner(*args, **kwargs):
            caller = service_caller()
            if not caller.has(scope):
                raise Problem(403, "Forbidden", f"This needs the scope {scope}.")
            return view(*args, **kwargs)
        inner._required_scope = scope
        return inner
    return wrap
