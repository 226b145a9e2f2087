"""The gateway's OAuth 2.0 access tokens: signed with its own key, checked by their signature alone.

An access token is a JWT (RFC 9068: ``typ: at+jwt``) signed with ``OAUTH_SIGNING_KEY`` (ES256,
ES384 or EdDSA, as the key is), with ``kid`` = the key's RFC 7638 thumbprint. It carries the
client's id, name, organisation and role and the scopes it was granted, for
``OAUTH_TOKEN_LIFETIME`` seconds (300). Checking one needs no database: a revoked client's tokens
keep working until they expire, so that lifetime is the revocation bound (the token endpoint
refuses a revoked client at once). A verified token is kept, by its exact string and the issuer it
was checked against, until its ``exp`` (a bounded LRU per process), so a client's repeated calls
verify its signature once: the revocation bound stays the token's lifetime. ``OAUTH_PREVIOUS_SIGNING_KEY`` is a key being rotated out: still
published and accepted, never signed with.

The issuer, and the audience, is the gateway's public base URL (``PUBLIC_URL``; in development
without it, the URL the request came to).
"""
from __future__ import annotations

import secrets as random
import threading
import time
from collections import OrderedDict

from flask import current_app, request
from joserfc import jwt
from joserfc.errors import ExpiredTokenError, InvalidClaimError, JoseError, MissingClaimError

from coproduction import secrets
from coproduction.auth import SCOPES, Caller, parse_smart_scope
from coproduction.config import Settings
from coproduction.http import Problem, ctx

from . import clients

ACCESS_TOKEN_TYPES = ("at+jwt", "application/at+jwt")
#: how many verified access tokens a process keeps (the least recently used goes first)
VERIFIED_TOKENS = 4096


class InvalidAccessToken(Exception):
    """An access token this gateway did not issue, or no longer honours; the message says why."""


class TokenAuthority:
    """The gateway's signing keys, and the tokens it issues and accepts with them."""

    def __init__(self, settings: Settings):
        self.key, self.algorithm = secrets.signing_key("OAUTH_SIGNING_KEY", settings.oauth_signing_key)
        self.kid = self.key.thumbprint()
        self.verifying = {self.kid: (self.key, self.algorithm)}
        if settings.oauth_previous_signing_key:
            old, old_algorithm = secrets.signing_key("OAUTH_PREVIOUS_SIGNING_KEY", settings.oauth_previous_signing_key)
            self.verifying.setdefault(old.thumbprint(), (old, old_algorithm))
        self.algorithms = sorted({alg for _key, alg in self.verifying.values()})
        self.lifetime = settings.oauth_token_lifetime
        self.public_url = settings.public_url
        self._verified: OrderedDict[tuple[str, str], tuple[Caller, float]] = OrderedDict()
        self._verified_lock = threading.Lock()

    def base_url(self) -> str:
        """The gateway's public base URL: the tokens' issuer and audience, the token URL's root."""
        return self.public_url or request.url_root.rstrip("/")

    def issue(self, client: Caller, granted: list[str]) -> str:
        now = int(time.time())
        base = self.base_url()
        claims = {
            "iss": base, "aud": base, "sub": client.client_id, "client_id": client.client_id,
            "iat": now, "exp": now + self.lifetime, "jti": random.token_urlsafe(16),
            "scope": " ".join(granted), "name": client.name, "org": client.org, "role": client.role,
        }
        header = {"alg": self.algorithm, "kid": self.kid, "typ": "at+jwt"}
        return jwt.encode(header, claims, self.key, algorithms=[self.algorithm])

    def verify(self, token: str) -> Caller:
        """The caller an access token speaks for; InvalidAccessToken on anything wrong with it.
        A token verified before is answered from the cache until its ``exp``."""
        key = (token, self.base_url())
        with self._verified_lock:
            found = self._verified.get(key)
            if found is not None:
                if time.time() < found[1]:
                    self._verified.move_to_end(key)
                    return found[0]
                del self._verified[key]  # expired: verified afresh, which says so
        caller, expires = self._verify_signed(token, key[1])
        with self._verified_lock:
            self._verified[key] = (caller, expires)
            if len(self._verified) > VERIFIED_TOKENS:
                self._verified.popitem(last=False)
        return caller

    def _verify_signed(self, token: str, base: str) -> tuple[Caller, float]:
        """The caller and the ``exp`` of an access token, from its signature and claims."""
        try:
            decoded = jwt.decode(token, self._key_named_by, algorithms=self.algorithms)
        except InvalidAccessToken:
            raise
        except JoseError as exc:
            reasons = {"bad_signature": "its signature does not verify",
                       "unsupported_algorithm": f"its alg is not {' or '.join(self.algorithms)}, which this gateway signs with"}
            raise InvalidAccessToken(reasons.get(exc.error, f"it is not a JWS this gateway signed ({exc.error})")) from None
        except (ValueError, TypeError):
            raise InvalidAccessToken("it is not a JWT") from None
        if str(decoded.header.get("typ", "")).lower() not in ACCESS_TOKEN_TYPES:
            raise InvalidAccessToken("it is not an access token (typ at+jwt)")
        claims = decoded.claims
        try:
            jwt.JWTClaimsRegistry(
                iss={"essential": True, "value": base}, aud={"essential": True, "value": base},
                exp={"essential": True}, sub={"essential": True}, client_id={"essential": True},
                scope={"essential": True, "allow_blank": True},
            ).validate(claims)
        except ExpiredTokenError:
            raise InvalidAccessToken("it has expired") from None
        except InvalidClaimError as exc:
            raise InvalidAccessToken(f"its {exc.claim} is not this gateway's" if exc.claim in ("iss", "aud")
                                     else f"its {exc.claim} claim is not valid") from None
        except MissingClaimError as exc:
            raise InvalidAccessToken(f"it lacks the claim(s) {exc.description}") from None
        granted = str(claims["scope"]).split()
        caller = Caller(claims["sub"], str(claims.get("name", "")), str(claims.get("org", "")),
                        str(claims.get("role", "")), frozenset(s for s in granted if s in SCOPES),
                        smart_scopes=frozenset(s for s in granted if parse_smart_scope(s)))
        return caller, float(claims["exp"])

    def _key_named_by(self, token):
        kid = token.headers().get("kid")
        entry = self.verifying.get(kid) if isinstance(kid, str) else None
        if entry is None:
            raise InvalidAccessToken(f"it names a key this gateway does not have (kid {kid!r})")
        key, algorithm = entry
        if token.headers().get("alg") != algorithm:
            raise InvalidAccessToken(f"its alg is not {algorithm}, the one its key signs with")
        return key

    def jwks(self) -> dict:
        """The public keys tokens may be signed with (the current one first), for resource servers."""
        keys = []
        for kid, (key, algorithm) in self.verifying.items():
            keys.append({**key.as_dict(private=False), "kid": kid, "alg": algorithm, "use": "sig"})
        return {"keys": keys}


def authority() -> TokenAuthority:
    return current_app.extensions["oauth"]


def caller_from_access_token(token: str) -> Caller:
    """The caller an access token of this gateway speaks for (InvalidAccessToken if bad signature,
    expired, another issuer or audience, an unknown kid or not an access token at all)."""
    return authority().verify(token)


def looks_like_jwt(token: str) -> bool:
    return token.count(".") == 2 and not token.startswith(clients.TOKEN_PREFIX)


def invalid_token(detail: str) -> Problem:
    """401 with RFC 6750's ``error="invalid_token"``, so an OAuth client knows to get a new token."""
    return Problem(401, "Unauthorized", detail, headers={
        "WWW-Authenticate": 'Bearer realm="coproduction", error="invalid_token"'})


def bearer_caller(token: str, session) -> Caller:
    """The caller of a request's bearer token: an access token by its signature alone; a static
    development token (looked up in ``session()``'s transaction) only where ALLOW_STATIC_TOKENS is
    on. A Problem (401) for anything else."""
    if looks_like_jwt(token):
        try:
            return caller_from_access_token(token)
        except InvalidAccessToken as exc:
            raise invalid_token(f"The access token is not valid: {exc}.") from None
    if not ctx().settings.allow_static_tokens:
        raise invalid_token("Static client tokens are not accepted here: get an access token from "
                            "POST /oauth2/token (docs/auth.md).")
    caller = clients.lookup(session(), token)
    if caller is None:
        raise invalid_token("The token is not valid or was revoked.")
    return caller


def client_signing_in(token: str) -> Caller | None:
    """For the pages' sign-in: the client a pasted token belongs to, if it may sign in now (an
    access token by its signature and the client not revoked since; a static token only where
    allowed). The session then keeps the client id and looks the client up on every page."""
    if looks_like_jwt(token):
        try:
            client_id = caller_from_access_token(token).client_id
        except InvalidAccessToken:
            return None
        with ctx().db.session() as session:
            row = clients.find(session, client_id)
        return clients.as_caller(row) if row is not None and row["revoked_at"] is None else None
    if not ctx().settings.allow_static_tokens:
        return None
    return clients.authenticate(ctx().db, token)
