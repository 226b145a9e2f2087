"""Scopes, roles, and the short-lived signed token the gateway forwards to each service.

Clients authenticate at the gateway with an OAuth 2.0 access token (gateway/oauth.py, docs/auth.md)
or, in development, a static token. The gateway then calls a service with a JWT (HS256,
SERVICE_TOKEN_SECRET, 60 s, audience = the service) that carries the client's identity and scopes.
Each service checks that token and the scope of every route itself, so a service reached directly
without one refuses. JOSE is joserfc's, here and in the gateway.
"""
from __future__ import annotations

import functools
import re
import time
from dataclasses import dataclass

from flask import g, request
from joserfc import jwt
from joserfc.errors import ExpiredTokenError, JoseError
from joserfc.jwk import OctKey

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
#: The SMART App Launch v2 system scopes (the FHIR API) each of our own scopes may be granted. The
#: one place that says so: a client may be granted a SMART scope only if one of the scopes it holds
#: lists that resource with at least those permissions (c create, r read, u update, d delete, s search).
SMART_GRANTS = {
    "portfolio:read": ("system/Patient.rs",),
    "plans:read": ("system/CarePlan.rs", "system/Goal.rs", "system/Observation.rs"),
    "plans:write": ("system/CarePlan.cu",),
    "budgets:read": ("system/Account.rs",),
    "decisions:read": ("system/Task.rs",),
    "groups:read": ("system/EpisodeOfCare.rs",),
    "subscriptions:manage": ("system/Subscription.cruds",),
}
SMART_PERMISSIONS = "cruds"
SMART_SCOPE = re.compile(r"^system/([A-Z][A-Za-z]{0,63})\.(c?r?u?d?s?)$")
TOKEN_LIFETIME = 60
ISSUER = "coproduction-gateway"


@functools.lru_cache(maxsize=1024)
def parse_smart_scope(scope: str) -> tuple[str, str] | None:
    """``system/CarePlan.rs`` -> ("CarePlan", "rs"); None for anything that is not a SMART v2
    system scope with its permissions in the canonical order (cruds)."""
    match = SMART_SCOPE.match(scope)
    if match is None or not match.group(2):
        return None
    return match.group(1), match.group(2)


def smart_permissions(smart_scopes) -> dict[str, set[str]]:
    """Resource type -> the permissions a set of SMART scopes grants on it, all scopes merged."""
    out: dict[str, set[str]] = {}
    for scope in smart_scopes:
        parsed = parse_smart_scope(scope)
        if parsed:
            out.setdefault(parsed[0], set()).update(parsed[1])
    return out


def smart_scopes_for(scopes) -> list[str]:
    """The SMART scopes a holder of our own ``scopes`` may be granted, one per resource type."""
    held = smart_permissions(s for scope in scopes for s in SMART_GRANTS.get(scope, ()))
    if "admin" in scopes:
        held = smart_permissions(s for granted in SMART_GRANTS.values() for s in granted)
    return sorted(f"system/{resource}.{''.join(p for p in SMART_PERMISSIONS if p in perms)}"
                  for resource, perms in held.items())


@dataclass(frozen=True)
class Caller:
    client_id: str
    name: str
    org: str
    role: str
    scopes: frozenset[str]
    purpose: str = "direct care"
    #: the SMART system scopes its access token was granted (``system/CarePlan.rs`` ...)
    smart_scopes: frozenset[str] = frozenset()

    def has(self, scope: str) -> bool:
        """Whether the caller holds ``scope``: one of ours (``plans:write``), or a SMART system
        scope (``system/CarePlan.u`` is held by a caller granted ``system/CarePlan.cu``)."""
        if "admin" in self.scopes or scope in self.scopes:
            return True
        wanted = parse_smart_scope(scope)
        if wanted is None:
            return False
        return set(wanted[1]) <= self._smart_permissions.get(wanted[0], set())

    @functools.cached_property
    def _smart_permissions(self) -> dict[str, set[str]]:  # a caller's scopes never change
        return smart_permissions(self.smart_scopes)


def issue_service_token(caller: Caller, audience: str, secret: str, lifetime: int = TOKEN_LIFETIME) -> str:
    now = int(time.time())
    claims = {
        "iss": ISSUER, "aud": audience, "iat": now, "exp": now + lifetime,
        "sub": caller.client_id, "name": caller.name, "org": caller.org, "role": caller.role,
        "scopes": sorted(caller.scopes), "purpose": caller.purpose,
    }
    return jwt.encode({"alg": "HS256"}, claims, _service_key(secret), algorithms=["HS256"])


@functools.lru_cache(maxsize=4)
def _service_key(secret: str) -> OctKey:
    return OctKey.import_key(secret)


class InvalidServiceToken(Exception):
    """A service token that is not valid here (bad signature, wrong audience or issuer, expired)."""


def verify_service_token(token: str, audience: str, secret: str) -> Caller:
    try:
        claims = jwt.decode(token, _service_key(secret), algorithms=["HS256"]).claims
        jwt.JWTClaimsRegistry(iss={"essential": True, "value": ISSUER}, aud={"essential": True, "value": audience},
                              sub={"essential": True}, exp={"essential": True}, iat={"essential": True},
                              ).validate(claims)
    except ExpiredTokenError:
        raise InvalidServiceToken("expired") from None
    except (JoseError, ValueError, TypeError) as exc:
        raise InvalidServiceToken(str(exc) or type(exc).__name__) from None
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
    except InvalidServiceToken as exc:
        raise unauthorised("The service token has expired." if str(exc) == "expired"
                           else "The bearer token is not valid for this service.")
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
