"""A SMART Backend Services client for the tests, as an integrator would build one: keys made with
joserfc, registered with `coproduction clients create --jwks-file`, tokens fetched with authlib's
OAuth2Session and its private_key_jwt client authentication."""
from __future__ import annotations

import json
import subprocess
import sys
import time
import uuid

import requests
from authlib.integrations.requests_client import OAuth2Session
from authlib.oauth2.rfc7523 import PrivateKeyJWT
from authlib.oauth2.rfc7523.assertion import private_key_jwt_sign
from joserfc import jwt
from joserfc.jwk import ECKey, RSAKey

from harness import ROOT

FHIR = "/fhir/R4"  # where the FHIR server is, below the gateway

ASSERTION_TYPE = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"


def new_key(alg: str, kid: str | None = None):
    """A private key for ``alg`` (RS384 or ES384), with a kid of its own."""
    parameters = {"kid": kid or f"{alg.lower()}-{uuid.uuid4().hex[:8]}", "use": "sig", "alg": alg}
    if alg == "RS384":
        return RSAKey.generate_key(2048, parameters=parameters)
    return ECKey.generate_key("P-384", parameters=parameters)


def jwks_of(*keys) -> dict:
    return {"keys": [k.as_dict(private=False) for k in keys]}


def cli(platform, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "bootstrap.cli", *args], env=dict(platform.env), cwd=ROOT,
                          capture_output=True, text=True, timeout=120)


def register(platform, *keys, role: str = "gp", org: str = "A81001", name: str = "Riverside Surgery",
             extra: tuple = ()) -> str:
    """Register a client with the public half of ``keys`` through the CLI; its client_id."""
    path = platform.var / f"jwks-{uuid.uuid4().hex[:8]}.json"
    path.write_text(json.dumps(jwks_of(*keys)))
    out = cli(platform, "clients", "create", "--name", name, "--org", org, "--role", role,
              "--jwks-file", str(path), *extra)
    assert out.returncode == 0, out.stderr
    return out.stdout.split()[-1]


def token_url(gateway) -> str:
    """The token URL of a gateway: a test Platform, or the gateway's base URL."""
    return (gateway if isinstance(gateway, str) else gateway.url) + "/oauth2/token"


class SmartPrivateKeyJWT(PrivateKeyJWT):
    """authlib's private_key_jwt with SMART's limit on the assertion: authlib signs one valid for
    an hour by default, and SMART Backend Services allows five minutes at most."""

    def sign(self, auth, token_endpoint):
        return private_key_jwt_sign(auth.client_secret, client_id=auth.client_id, token_endpoint=token_endpoint,
                                    alg=self.alg, header=dict(self.headers or {}), expires_in=300)


def oauth_session(platform, client_id: str, key, scope: str | None = None) -> OAuth2Session:
    """An authlib session that has fetched an access token (and uses it on every request)."""
    alg = key.as_dict(private=False)["alg"]
    auth = SmartPrivateKeyJWT(token_url(platform), headers={"kid": key.kid}, alg=alg)
    session = OAuth2Session(client_id, key, token_endpoint_auth_method=auth, scope=scope)
    session.fetch_token(token_url(platform), grant_type="client_credentials")
    return session


def assertion(client_id: str, key, aud: str, *, alg: str | None = None, header: dict | None = None,
              **claims) -> str:
    """A client assertion signed with ``key``; any claim may be overridden (None drops it)."""
    now = int(time.time())
    body = {"iss": client_id, "sub": client_id, "aud": aud, "iat": now, "exp": now + 240,
            "jti": uuid.uuid4().hex}
    body.update(claims)
    body = {k: v for k, v in body.items() if v is not None}
    alg = alg or key.as_dict(private=False).get("alg")
    return jwt.encode({"alg": alg, "kid": key.kid, **(header or {})}, body, key, algorithms=[alg])


def ask_token(platform, signed: str | None, **form) -> requests.Response:
    data = {"grant_type": "client_credentials", "client_assertion_type": ASSERTION_TYPE}
    if signed is not None:
        data["client_assertion"] = signed
    data.update(form)
    return requests.post(token_url(platform), data={k: v for k, v in data.items() if v is not None}, timeout=30)


def access_token(platform, client_id: str, key, scope: str | None = None) -> dict:
    r = ask_token(platform, assertion(client_id, key, token_url(platform)), scope=scope)
    assert r.status_code == 200, r.text
    return r.json()


def bearer(token: str) -> dict:
    return {"Authorization": f"Bearer {token}"}


def fhir_request(platform, token: str | None, method: str, path: str, **kwargs) -> requests.Response:
    """A request to the platform's FHIR server (``path`` below ``FHIR``), bearing ``token`` if one is given."""
    headers = {**kwargs.pop("headers", {}), **(bearer(token) if token else {})}
    return requests.request(method, platform.url + FHIR + path, headers=headers, timeout=30, **kwargs)
