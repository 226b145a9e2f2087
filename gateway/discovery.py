"""What a client or a resource server needs to find before it has a token (all public):

- ``/.well-known/smart-configuration``: SMART App Launch 2.x, the fields for Backend Services;
- ``/.well-known/oauth-authorization-server``: RFC 8414 authorization server metadata;
- ``/.well-known/jwks.json``: the gateway's public keys (with kid) that access tokens are signed
  with, the previous one too while a rotation is under way.
"""
from __future__ import annotations

from flask import Blueprint, jsonify

from coproduction.auth import SCOPES, smart_scopes_for

from .client_keys import ASSERTION_ALGORITHMS
from .oauth import GRANT_TYPE, token_url
from .tokens import authority

bp = Blueprint("discovery", __name__)
CACHE = "public, max-age=300"


def _common() -> dict:
    base = authority().base_url()
    return {
        "issuer": base,
        "jwks_uri": base + "/.well-known/jwks.json",
        "token_endpoint": token_url(),
        "token_endpoint_auth_methods_supported": ["private_key_jwt"],
        "token_endpoint_auth_signing_alg_values_supported": sorted(ASSERTION_ALGORITHMS),
        "grant_types_supported": [GRANT_TYPE],
        "scopes_supported": [*SCOPES, *smart_scopes_for(SCOPES)],
        "response_types_supported": [],  # there is no authorization endpoint: no user ever signs in here
    }


def _cached(body: dict):
    resp = jsonify(body)
    resp.headers["Cache-Control"] = CACHE
    return resp


@bp.get("/.well-known/smart-configuration")
def smart_configuration():
    return _cached({
        **_common(),
        "capabilities": ["client-confidential-asymmetric", "permission-v2"],
        "code_challenge_methods_supported": [],
    })


@bp.get("/.well-known/oauth-authorization-server")
def authorization_server_metadata():
    return _cached({**_common(), "service_documentation": authority().base_url() + "/docs"})


@bp.get("/.well-known/jwks.json")
def jwks():
    resp = _cached(authority().jwks())
    resp.mimetype = "application/jwk-set+json"
    return resp
