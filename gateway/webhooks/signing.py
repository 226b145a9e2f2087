"""Standard Webhooks signing: a ``whsec_`` secret per subscription, and the ``webhook-signature``
``v1,<base64 HMAC-SHA256 of id.timestamp.body>`` keyed with the secret's base64-decoded part."""
from __future__ import annotations

import base64
import hashlib
import hmac
import os


def new_secret() -> str:
    return "whsec_" + base64.b64encode(os.urandom(32)).decode()


def sign(secret: str, msg_id: str, timestamp: int, body: bytes) -> str:
    key = base64.b64decode(secret.removeprefix("whsec_"))
    signed = f"{msg_id}.{timestamp}.".encode() + body
    return "v1," + base64.b64encode(hmac.new(key, signed, hashlib.sha256).digest()).decode()
