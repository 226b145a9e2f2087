"""The audit log's signing key (Ed25519) and the signed tree head's bytes.

The sequencer signs with the private key, ``AUDIT_SIGNING_KEY`` (PEM) or the file
``AUDIT_SIGNING_KEY_FILE`` names. The gateway's web processes only publish and check: they take
``AUDIT_PUBLIC_KEY`` (PEM) if set, so the private key can stay with the sequencer alone, otherwise
the public half of the signing key. Without either, neither starts.
"""
from __future__ import annotations

import hashlib
import struct
from dataclasses import dataclass
from pathlib import Path

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from coproduction import secrets
from coproduction.secrets import ConfigurationError

SIGNING = "AUDIT_SIGNING_KEY"
PUBLIC = "AUDIT_PUBLIC_KEY"
HOW = (f"set {SIGNING} to an Ed25519 private key in PEM (e.g. `openssl genpkey -algorithm ed25519`), "
       f"or {SIGNING}_FILE to a file holding it")


def signing_key() -> Ed25519PrivateKey:
    pem = secrets.read(SIGNING)
    if not pem:
        raise ConfigurationError(f"{SIGNING} is not set: {HOW}")
    try:
        key = serialization.load_pem_private_key(pem.encode(), password=None)
    except (ValueError, TypeError) as exc:
        raise ConfigurationError(f"{SIGNING} is not a private key in PEM ({exc}): {HOW}") from None
    if not isinstance(key, Ed25519PrivateKey):
        raise ConfigurationError(f"{SIGNING} is a {type(key).__name__}, not an Ed25519 key: {HOW}")
    return key


def public_key() -> Ed25519PublicKey:
    """The key tree heads are checked against: AUDIT_PUBLIC_KEY, else the signing key's public half."""
    pem = secrets.read(PUBLIC)
    if not pem:
        return signing_key().public_key()
    return load_public(pem, PUBLIC)


def load_public(pem: str, what: str = "the public key") -> Ed25519PublicKey:
    try:
        key = serialization.load_pem_public_key(pem.encode())
    except (ValueError, TypeError) as exc:
        raise ConfigurationError(f"{what} is not a public key in PEM ({exc})") from None
    if not isinstance(key, Ed25519PublicKey):
        raise ConfigurationError(f"{what} is a {type(key).__name__}, not an Ed25519 key")
    return key


def public_pem(key: Ed25519PublicKey) -> str:
    return key.public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo).decode()


def key_id(key: Ed25519PublicKey) -> str:
    """SHA-256 of the key's DER SubjectPublicKeyInfo, hex (as a CT log's ID is formed)."""
    der = key.public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
    return hashlib.sha256(der).hexdigest()


def jwk(key: Ed25519PublicKey) -> dict:
    import base64
    raw = key.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    return {"kty": "OKP", "crv": "Ed25519", "x": base64.urlsafe_b64encode(raw).rstrip(b"=").decode(),
            "kid": key_id(key), "use": "sig", "alg": "EdDSA"}


# -- the signed tree head --------------------------------------------------------------------------
@dataclass(frozen=True)
class TreeHead:
    tree_size: int
    timestamp: int  # milliseconds since the epoch
    root_hash: bytes
    signature: bytes = b""
    key_id: str = ""

    def signed_bytes(self) -> bytes:
        """TreeHeadDataV2 of RFC 9162 §4.10 in TLS encoding: uint64 timestamp, uint64 tree_size,
        NodeHash root_hash (a one-byte length, then the hash), no extensions (a two-byte zero)."""
        return struct.pack(">QQB", self.timestamp, self.tree_size, len(self.root_hash)) + self.root_hash + b"\x00\x00"

    def signed_with(self, key: Ed25519PrivateKey) -> "TreeHead":
        return TreeHead(self.tree_size, self.timestamp, self.root_hash, key.sign(self.signed_bytes()),
                        key_id(key.public_key()))

    def valid_for(self, key: Ed25519PublicKey) -> bool:
        try:
            key.verify(self.signature, self.signed_bytes())
        except InvalidSignature:
            return False
        return True

    def to_json(self) -> dict:
        return {"tree_size": self.tree_size, "timestamp": self.timestamp, "root_hash": self.root_hash.hex(),
                "signature": self.signature.hex(), "key_id": self.key_id}

    @classmethod
    def from_json(cls, data: dict) -> "TreeHead":
        return cls(int(data["tree_size"]), int(data["timestamp"]), bytes.fromhex(data["root_hash"]),
                   bytes.fromhex(data["signature"]), data["key_id"])

    @classmethod
    def from_row(cls, row) -> "TreeHead":
        return cls(row.tree_size, row.timestamp, bytes(row.root_hash), bytes(row.signature), row.key_id)


def development_key(var: Path) -> dict[str, str]:
    """For ``coproduction run`` only: an Ed25519 key under ``var/secrets/``, kept across restarts
    (a new key would make every witness refuse the log). A key already configured is kept."""
    if secrets.read(SIGNING):
        return {}
    folder = var / "secrets"
    folder.mkdir(parents=True, exist_ok=True)
    folder.chmod(0o700)
    path = folder / "audit_signing_key.pem"
    if not path.exists():
        pem = Ed25519PrivateKey.generate().private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
        path.write_bytes(pem)
        path.chmod(0o600)
    return {f"{SIGNING}_FILE": str(path)}
