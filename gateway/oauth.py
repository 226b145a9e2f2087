"""``POST /oauth2/token``: OAuth 2.0 client credentials with ``private_key_jwt`` client
authentication (RFC 6749 §4.4, RFC 7521 / RFC 7523 §2.2, SMART App Launch "Backend Services").

The client sends a JWT it signed (RS384 or ES384) with one of its registered keys: ``iss`` =
``sub`` = its client_id, ``aud`` = this token URL, ``exp`` at most five minutes ahead and a ``jti``
it never used before (kept in ``oauth_assertions`` until it expires, so a replay is refused by every
gateway replica). The answer is an access token signed by the gateway (gateway/tokens.py) carrying
the scopes granted: those asked for, if the client holds them all; everything it holds if it asked
for none. Refusals are RFC 6749 §5.2 JSON errors. See docs/auth.md.
"""
from __future__ import annotations

import json
import logging
import math
import time
from datetime import datetime, timezone

from flask import Blueprint, Response, current_app, request
from joserfc import jws, jwt
from joserfc.errors import JoseError
from sqlalchemy import delete
from sqlalchemy.exc import IntegrityError

from coproduction.auth import SCOPES, parse_smart_scope, smart_permissions, smart_scopes_for
from coproduction.http import ctx
from coproduction.events import now

from . import client_keys, clients
from .models import oauth_assertions
from .tokens import authority

log = logging.getLogger(__name__)
bp = Blueprint("oauth", __name__)

GRANT_TYPE = "client_credentials"
ASSERTION_TYPE = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"
MAX_ASSERTION_LIFETIME = 300
#: seconds a client's clock may run ahead of ours (exp, iat and nbf; an expired assertion gets none)
CLOCK_SKEW = 30
MAX_ASSERTION_BYTES = 16_000
MAX_SCOPE_CHARS = 2_000
MAX_JTI_CHARS = 255
MAX_CLIENT_ID_CHARS = 64


class OAuthError(Exception):
    """An RFC 6749 §5.2 error response."""

    def __init__(self, error: str, description: str, status: int = 400):
        super().__init__(description)
        self.error, self.description, self.status = error, description, status

    def response(self) -> Response:
        return _json({"error": self.error, "error_description": self.description}, self.status)


def _json(body: dict, status: int = 200) -> Response:
    resp = Response(json.dumps(body), status=status, mimetype="application/json")
    resp.headers["Cache-Control"] = "no-store"
    resp.headers["Pragma"] = "no-cache"
    return resp


def token_url() -> str:
    return authority().base_url() + "/oauth2/token"


@bp.post("/oauth2/token")
def token():
    try:
        form = _form()
        client = _authenticate_client(form)
        granted = grant(list(client["scopes"]), form.get("scope"))
    except OAuthError as exc:
        log.info("oauth token refused: %s (%s)", exc.error, exc.description)
        return exc.response()
    issuer = authority()
    access_token = issuer.issue(clients.as_caller(client), granted)
    log.info("oauth token issued to client %s: %s", client["id"], " ".join(granted))
    return _json({"access_token": access_token, "token_type": "Bearer", "expires_in": issuer.lifetime,
                  "scope": " ".join(granted)})


def _form() -> dict[str, str]:
    if request.mimetype != "application/x-www-form-urlencoded":
        raise OAuthError("invalid_request", "Send the parameters form-encoded "
                         "(Content-Type: application/x-www-form-urlencoded).")
    form = {}
    for name, values in request.form.lists():
        if len(values) > 1:
            raise OAuthError("invalid_request", f"The parameter {name} is sent more than once.")
        form[name] = values[0]
    grant_type = form.get("grant_type")
    if not grant_type:
        raise OAuthError("invalid_request", "grant_type is missing; send grant_type=client_credentials.")
    if grant_type != GRANT_TYPE:
        raise OAuthError("unsupported_grant_type", f"Only grant_type=client_credentials is supported here, "
                         f"not {grant_type[:100]!r}.")
    return form


def _authenticate_client(form: dict[str, str]):
    """The client's row, once its assertion is proved genuine, fresh and used for the first time."""
    if "client_secret" in form or request.authorization is not None:
        raise OAuthError("invalid_client", "Clients authenticate with private_key_jwt here "
                         "(client_assertion), never with a secret.", 401)
    if form.get("client_assertion_type") != ASSERTION_TYPE or not form.get("client_assertion"):
        raise OAuthError("invalid_client", f"Authenticate with client_assertion_type={ASSERTION_TYPE} and a "
                         "client_assertion JWT signed with your registered key.", 401)
    assertion = form["client_assertion"]
    if len(assertion) > MAX_ASSERTION_BYTES:
        raise OAuthError("invalid_client", "The client_assertion is too long.", 401)
    try:
        unverified = jws.extract_compact(assertion.encode())
        header = unverified.headers()
        peeked = json.loads(unverified.payload)
    except (JoseError, ValueError, TypeError):
        raise OAuthError("invalid_client", "The client_assertion is not a signed JWT.", 401) from None
    alg = header.get("alg")
    if not isinstance(alg, str) or alg not in client_keys.ASSERTION_ALGORITHMS:
        raise OAuthError("invalid_client", f"The client_assertion is signed with {str(alg)[:20]!r}; "
                         "only RS384 and ES384 are accepted.", 401)
    client_id = peeked.get("iss") if isinstance(peeked, dict) else None
    if not _storable(client_id, MAX_CLIENT_ID_CHARS) or peeked.get("sub") != client_id:
        raise OAuthError("invalid_client", "The client_assertion's iss and sub must both be your client_id.", 401)
    if form.get("client_id") not in (None, client_id):
        raise OAuthError("invalid_client", "client_id differs from the client_assertion's iss.", 401)
    db = ctx().db
    with db.session() as session:
        client = clients.find(session, client_id)
    if client is None:
        raise OAuthError("invalid_client", "No client is registered with that client_id.", 401)
    claims = _verified_claims(assertion, client, alg, header.get("kid"))
    if client["revoked_at"] is not None:  # said only to the holder of the client's key
        raise OAuthError("invalid_client", "This client has been revoked.", 401)
    _spend(db, client_id, claims["jti"], claims["exp"])
    return client


def _verified_claims(assertion: str, client, alg: str, kid) -> dict:
    try:
        if client["jwks"]:
            jwks = client["jwks"]
        elif client["jwks_uri"]:
            jwks = remote_key_sets().get(client["jwks_uri"], kid if isinstance(kid, str) else None)
        else:
            raise OAuthError("invalid_client", "This client is not registered with public keys.", 401)
        key = client_keys.key_for(jwks, alg, kid if isinstance(kid, str) else None)
    except client_keys.BadKeys as exc:
        raise OAuthError("invalid_client", f"No registered key verifies the assertion: {exc}.", 401) from None
    try:
        claims = jwt.decode(assertion, key, algorithms=[alg]).claims
    except (JoseError, ValueError, TypeError):
        raise OAuthError("invalid_client", "The client_assertion's signature does not verify with the "
                         "client's registered key.", 401) from None
    _check_times_and_audience(claims)
    return claims


def _check_times_and_audience(claims: dict) -> None:
    aud = claims.get("aud")
    audiences = aud if isinstance(aud, list) else [aud]
    if token_url() not in audiences:
        raise OAuthError("invalid_client", f"The client_assertion's aud must be this token URL, {token_url()}.", 401)
    moment = time.time()
    exp = claims.get("exp")
    if not _time(exp):
        raise OAuthError("invalid_client", "The client_assertion has no exp (a NumericDate).", 401)
    if exp <= moment:
        raise OAuthError("invalid_client", "The client_assertion has expired.", 401)
    if exp > moment + MAX_ASSERTION_LIFETIME + CLOCK_SKEW:
        raise OAuthError("invalid_client", f"The client_assertion's exp is more than {MAX_ASSERTION_LIFETIME} "
                         "seconds ahead.", 401)
    for name in ("iat", "nbf"):
        value = claims.get(name)
        if value is not None and (not _time(value) or value > moment + CLOCK_SKEW):
            raise OAuthError("invalid_client", f"The client_assertion's {name} is in the future.", 401)
    if not _storable(claims.get("jti"), MAX_JTI_CHARS):
        raise OAuthError("invalid_client", f"The client_assertion needs a jti (a string of 1-{MAX_JTI_CHARS} "
                         "characters) used only once.", 401)


def _time(value) -> bool:
    """A NumericDate: a finite number (Python's JSON also reads NaN and Infinity)."""
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def _storable(value, longest: int) -> bool:
    """A non-empty string a database column can hold (PostgreSQL text cannot hold U+0000)."""
    return isinstance(value, str) and 0 < len(value) <= longest and "\x00" not in value


def _spend(db, client_id: str, jti: str, exp: float) -> None:
    """Record the assertion's jti until its exp; a second use, anywhere, is refused."""
    try:
        with db.session() as session:
            session.execute(oauth_assertions.insert().values(
                client_id=client_id, jti=jti, expires_at=datetime.fromtimestamp(exp, timezone.utc)))
    except IntegrityError:
        raise OAuthError("invalid_client", "This client_assertion (its jti) has been used already.", 401) from None
    with db.session() as session:  # what has expired can no longer be replayed: it need not be kept
        session.execute(delete(oauth_assertions).where(oauth_assertions.c.expires_at < now()))


def remote_key_sets() -> client_keys.RemoteKeySets:
    """This process's cache of the JWK Sets clients publish at their jwks_uri."""
    return current_app.extensions["oauth_remote_keys"]


# -- scopes -----------------------------------------------------------------------------------------
def grantable(held: list[str]) -> list[str]:
    """Everything a client holding our scopes ``held`` may be granted: those, and their SMART scopes."""
    return sorted(held) + smart_scopes_for(held)


def grant(held: list[str], requested: str | None) -> list[str]:
    """The scopes to grant for a request's ``scope`` (all that are grantable when it names none);
    invalid_scope naming every scope asked for that the client may not have."""
    if not requested or not requested.strip():
        return grantable(held)
    if len(requested) > MAX_SCOPE_CHARS:
        raise OAuthError("invalid_scope", f"The scope parameter is longer than {MAX_SCOPE_CHARS} characters.")
    allowed_smart = smart_permissions(smart_scopes_for(held))
    wanted = list(dict.fromkeys(requested.split()))
    refused = []
    for scope in wanted:
        smart = parse_smart_scope(scope)
        if scope in SCOPES:
            ok = scope in held
        elif smart is not None:
            ok = set(smart[1]) <= allowed_smart.get(smart[0], set())
        else:
            ok = False
        if not ok:
            refused.append(scope[:100])
    if refused:
        raise OAuthError("invalid_scope", "This client may not be granted: " + " ".join(refused)
                         + ". It may be granted: " + " ".join(grantable(held)) + ".")
    return wanted
