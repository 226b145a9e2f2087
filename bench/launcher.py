"""Everything the bench takes from the platform's composition, in one module: it starts the
platform through the same launcher as ``coproduction run`` and the tests (``bootstrap/launcher.py``).
"""
from __future__ import annotations

import time
import uuid
from pathlib import Path
from typing import Callable

import requests

#: the clients the bench calls the gateway as
ROLES = ("hospital", "gp", "admin")
#: the organisation of every bench client: the hospital's admissions hold for its OAuth client too
ORG = "BENCH1"
#: what the OAuth reads need: the JSON portfolio, and CarePlan read and search (docs/fhir.md)
#: every read scope of the hospital role (so its token sees what the static hospital token sees),
#: and the SMART scope of the FHIR CarePlan reads
OAUTH_SCOPE = "portfolio:read plans:read budgets:read decisions:read groups:read system/CarePlan.rs"
ASSERTION_TYPE = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"


def command(*argv: str) -> list[str]:
    """The argv of a ``coproduction`` subcommand, run by this interpreter."""
    from bootstrap import launcher
    return launcher.command(*argv)


def development_secrets(var: Path) -> dict[str, str]:
    """The secrets and signing keys ``coproduction run`` makes for development, made afresh under var."""
    from coproduction import secrets
    from bootstrap.run import DEV_SECRETS
    from gateway.audit import keys as audit_keys
    return {**secrets.development(var, DEV_SECRETS), **audit_keys.development_key(var),
            **secrets.development_signing_key(var)}


def launch(services: list[str], spawn: Callable[..., object], web_name: str) -> dict[str, str]:
    """Start the platform as ``coproduction run`` does; return one client's token per role.

    Every schema is migrated, then ``spawn(label, argv, name of the port it serves on, env)`` starts
    each process: the web processes, the relays, the consumer, the webhook dispatcher and the audit
    sequencer (with the gateway's audit signing key, from the development secrets). The gateway's
    web backends are named ``web_name`` in PostgreSQL (``PGAPPNAME``), so their locks can be told apart.
    """
    from bootstrap import launcher
    launcher.migrate(services)
    tokens = launcher.create_clients("bench", {role: ORG for role in ROLES})
    for label, argv in launcher.processes(services):
        if label == "gateway-web":
            spawn_gateway_web(label, "gateway", spawn, web_name)
        else:
            spawn(label, command(*argv), label.removesuffix("-web") if label.endswith("-web") else None)
    return tokens


def spawn_gateway_web(label: str, port_of: str, spawn: Callable[..., object], web_name: str) -> None:
    """One gateway web process (``coproduction serve gateway``), its backends named web_name."""
    spawn(label, command("serve", "gateway"), port_of, {"PGAPPNAME": web_name})


class OAuthClient:
    """A SMART Backend Services client of the hospital's organisation (docs/auth.md): an ES384 key
    registered as its JWK Set, and access tokens got at ``/oauth2/token`` with a signed assertion."""

    def __init__(self, gateway: str):
        from joserfc.jwk import ECKey
        from coproduction.config import Settings
        from gateway import client_keys, clients
        from gateway.app import database
        self.token_url = gateway + "/oauth2/token"
        self.key = ECKey.generate_key("P-384", parameters={"kid": "bench-" + uuid.uuid4().hex[:8],
                                                           "use": "sig", "alg": "ES384"})
        jwks = client_keys.public_jwks({"keys": [self.key.as_dict(private=False)]})
        db = database(Settings.from_env("gateway"))
        try:
            self.client_id = clients.register(db, "bench hospital (OAuth)", ORG, "hospital", jwks=jwks)
        finally:
            db.dispose()

    def access_token(self, scope: str = OAUTH_SCOPE) -> str:
        """A fresh access token (each lives OAUTH_TOKEN_LIFETIME, 300 s by default)."""
        from joserfc import jwt
        now = int(time.time())
        claims = {"iss": self.client_id, "sub": self.client_id, "aud": self.token_url, "iat": now,
                  "exp": now + 240, "jti": uuid.uuid4().hex}
        assertion = jwt.encode({"alg": "ES384", "kid": self.key.kid}, claims, self.key, algorithms=["ES384"])
        r = requests.post(self.token_url, data={"grant_type": "client_credentials", "scope": scope,
                                                "client_assertion_type": ASSERTION_TYPE,
                                                "client_assertion": assertion}, timeout=10)
        if r.status_code != 200:
            raise RuntimeError(f"POST /oauth2/token answered {r.status_code}: {r.text[:300]}")
        return r.json()["access_token"]


def nhs_numbers(count: int, start: int = 0) -> list[str]:
    """The NHS numbers ``coproduction seed`` gives its people, count of them from start onwards."""
    from bootstrap.seed import nhs_numbers as seeded
    return seeded(count, start)
