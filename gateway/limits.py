"""Per-client rate limits (flask-limiter): 429 with Retry-After when a client sends too much.

Limits are counted per bearer token (per address without one). The store is in memory per
process unless RATE_LIMIT_STORAGE_URI names a shared one (e.g. redis://...), which a deployment
with several gateway replicas should set.
"""
from __future__ import annotations

import hashlib
import os

from flask import request
from flask_limiter import Limiter

EXEMPT = ("/healthz", "/readyz", "/metrics")


def _client_key() -> str:
    header = request.headers.get("Authorization", "")
    if header.startswith("Bearer "):
        return "token:" + hashlib.sha256(header[7:].strip().encode()).hexdigest()[:32]
    return "addr:" + (request.remote_addr or "unknown")


def init_limits(app, rate: str) -> Limiter:
    return Limiter(_client_key, app=app, default_limits=[rate], headers_enabled=True,
                   storage_uri=os.environ.get("RATE_LIMIT_STORAGE_URI", "memory://"),
                   default_limits_exempt_when=lambda: request.path.startswith(EXEMPT))
