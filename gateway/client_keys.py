"""The public keys a client signs its OAuth assertions with: checked at registration, fetched from
its ``jwks_uri`` (SSRF-safe, cached), and the one key that verifies a given assertion.

A client is registered with a JWK Set (stored) or the https URL of one (fetched when registered, to
check it, and again whenever the cached copy is older than ``CACHE_SECONDS`` or an assertion names
a kid the copy lacks: a client rotating its keys publishes the new one and just uses it).
"""
from __future__ import annotations

import http.client
import json
import ssl
import threading
import time
from contextlib import closing
from urllib.parse import urlsplit

from joserfc.errors import JoseError
from joserfc.jwk import ECKey, RSAKey, import_key

from .webhooks.transport import UnsafeUrl, connections, cut_off_at, resolve_safely

#: what a client may sign its assertion with (SMART Backend Services), and the key each needs
ASSERTION_ALGORITHMS = {"RS384": ("RSA", None), "ES384": ("EC", "P-384")}
MIN_RSA_BITS = 2048
MAX_KEYS = 20
MAX_JWKS_BYTES = 64 * 1024
FETCH_TIMEOUT = 5.0
CACHE_SECONDS = 300
#: an unknown kid refetches the set, but at most this often per URL (a stream of made-up kids must
#: not turn the gateway into a client's load generator)
REFETCH_SECONDS = 10
PRIVATE_MEMBERS = ("d", "p", "q", "dp", "dq", "qi", "oth", "k")


class BadKeys(ValueError):
    """A JWK Set (or a URL for one) we will not register or use, with the reason."""


def public_jwks(data) -> dict:
    """The JWK Set ``data`` as we keep it (public members only), or BadKeys saying what is wrong:
    RSA keys of at least 2048 bits or EC P-384 keys, meant for signing, never a private key."""
    if not isinstance(data, dict) or not isinstance(data.get("keys"), list) or not data["keys"]:
        raise BadKeys('is not a JWK Set: a JSON object {"keys": [...]} with at least one key')
    if len(data["keys"]) > MAX_KEYS:
        raise BadKeys(f"has {len(data['keys'])} keys; at most {MAX_KEYS}")
    kept, kids = [], set()
    for n, jwk in enumerate(data["keys"]):
        where = f"key {n}" + (f" (kid {jwk.get('kid')!r})" if isinstance(jwk, dict) and jwk.get("kid") else "")
        if not isinstance(jwk, dict):
            raise BadKeys(f"{where} is not a JSON object")
        if any(member in jwk for member in PRIVATE_MEMBERS):
            raise BadKeys(f"{where} is a private key: register only the public keys")
        if jwk.get("use", "sig") != "sig" or "verify" not in jwk.get("key_ops", ["verify"]):
            raise BadKeys(f"{where} is not meant for signatures (use / key_ops)")
        if "alg" in jwk and jwk["alg"] not in ASSERTION_ALGORITHMS:
            raise BadKeys(f"{where} is for {jwk['alg']}; assertions are signed with RS384 or ES384")
        kid = jwk.get("kid")
        if kid is not None and (not isinstance(kid, str) or kid in kids):
            raise BadKeys(f"{where} has a kid that is not a string or is not unique in the set")
        kids.add(kid)
        kept.append(_public(jwk, where))
    return {"keys": kept}


def _public(jwk: dict, where: str) -> dict:
    kty = jwk.get("kty")
    try:
        if kty == "RSA":
            key = RSAKey.import_key(jwk)
            if key.raw_value.key_size < MIN_RSA_BITS:
                raise BadKeys(f"{where} is an RSA key of {key.raw_value.key_size} bits; at least {MIN_RSA_BITS}")
        elif kty == "EC" and jwk.get("crv") == "P-384":
            key = ECKey.import_key(jwk)
        else:
            raise BadKeys(f"{where} is {kty or 'of no kty'} {jwk.get('crv', '')}".rstrip()
                          + "; keys are RSA (RS384) or EC P-384 (ES384)")
    except (JoseError, ValueError, TypeError) as exc:
        if isinstance(exc, BadKeys):
            raise
        raise BadKeys(f"{where} is not a valid {kty} key ({exc or type(exc).__name__})") from None
    out = key.as_dict(private=False)
    out.update({name: jwk[name] for name in ("kid", "alg", "use") if name in jwk})
    return out


def check_jwks_uri(url: str, allow_loopback: bool) -> tuple[str, int, list[str]]:
    """(host, port, the addresses to connect to) for a usable jwks_uri; BadKeys unless it is https
    (http too for loopback in development) and every address its host resolves to is public."""
    scheme = urlsplit(url).scheme if isinstance(url, str) else ""
    if scheme != "https" and not (allow_loopback and scheme == "http"):
        raise BadKeys("must be an https URL" + ("" if allow_loopback else
                                               " (ALLOW_LOOPBACK_JWKS_URI=1 allows http on loopback in development)"))
    try:
        return resolve_safely(url, allow_loopback)
    except UnsafeUrl as exc:
        reason = str(exc).split("; callbacks must be public")[0]  # the rest is the webhooks' advice
        raise BadKeys(f"{reason}; a jwks_uri must be public" + ("" if allow_loopback else
                      " (ALLOW_LOOPBACK_JWKS_URI=1 allows loopback in development)")) from None


def fetch_jwks(url: str, allow_loopback: bool, tls_context: ssl.SSLContext | None = None) -> dict:
    """GET the JWK Set at ``url``: from an address checked as public (the one connected to, so DNS
    cannot be re-pointed in between), no redirects, at most 64 KiB, all within 5 s (a server that
    trickles its answer is cut off: a token request waits on this); then checked."""
    host, port, addresses = check_jwks_uri(url, allow_loopback)
    parts = urlsplit(url)
    path = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
    deadline = time.monotonic() + FETCH_TIMEOUT
    errors: list[Exception] = []
    with closing(connections(parts.scheme, host, port, addresses, deadline, errors, tls_context)) as opened:
        for conn in opened:
            try:
                with cut_off_at(conn.sock, deadline):
                    conn.request("GET", path, headers={"Accept": "application/jwk-set+json, application/json",
                                                       "User-Agent": "coproduction-oauth/1"})
                    response = conn.getresponse()
                    body = response.read(MAX_JWKS_BYTES + 1)
                if time.monotonic() > deadline:
                    raise TimeoutError(f"timed out after {FETCH_TIMEOUT:g}s")
            except (OSError, http.client.HTTPException) as exc:
                errors.append(exc)
                continue
            if response.status != 200:
                raise BadKeys(f"answered {response.status}, not 200 with a JWK Set")
            if len(body) > MAX_JWKS_BYTES:
                raise BadKeys(f"answered more than {MAX_JWKS_BYTES} bytes")
            try:
                data = json.loads(body)
            except ValueError:
                raise BadKeys("did not answer JSON") from None
            return public_jwks(data)
    last_error = errors[-1] if errors else None
    raise BadKeys(f"could not be fetched within {FETCH_TIMEOUT:g}s ({type(last_error).__name__}: {last_error})")


class RemoteKeySets:
    """The JWK Sets fetched from clients' URLs, shared by the threads of one gateway process."""

    def __init__(self, allow_loopback: bool):
        self.allow_loopback = allow_loopback
        self._sets: dict[str, tuple[float, dict]] = {}
        self._lock = threading.Lock()

    def get(self, url: str, wanted_kid: str | None = None) -> dict:
        with self._lock:
            fetched_at, jwks = self._sets.get(url, (0.0, None))
        age = time.monotonic() - fetched_at
        stale = jwks is None or age > CACHE_SECONDS
        missing = wanted_kid is not None and jwks is not None and all(
            k.get("kid") != wanted_kid for k in jwks["keys"])
        if stale or (missing and age > REFETCH_SECONDS):
            jwks = fetch_jwks(url, self.allow_loopback)
            with self._lock:
                self._sets[url] = (time.monotonic(), jwks)
        return jwks


def key_for(jwks: dict, alg: str, kid: str | None) -> RSAKey | ECKey:
    """The key of ``jwks`` that verifies an assertion signed with ``alg`` (named by ``kid``, or the
    only key of the right kind when the assertion names none); BadKeys if there is none."""
    kty, crv = ASSERTION_ALGORITHMS[alg]
    fits = [k for k in jwks["keys"] if k["kty"] == kty and (crv is None or k.get("crv") == crv)
            and k.get("alg", alg) == alg]
    if kid is not None:
        fits = [k for k in fits if k.get("kid") == kid]
        if not fits:
            raise BadKeys(f"the client has no {alg} key with kid {kid!r}")
    elif len(fits) != 1:
        raise BadKeys(f"the assertion names no kid and the client has {len(fits)} {alg} keys")
    return import_key(fits[0], kty)
