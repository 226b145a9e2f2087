"""Secrets and keys: each from the environment (``NAME``) or a file (``NAME_FILE``), never a default.

A process that needs a secret refuses to start without a good one: missing, a value published
somewhere (a documentation example, an old compose default), or shorter than 32 bytes. The
gateway's OAuth signing key is a private key (PEM or JWK): EC P-256 (ES256), P-384 (ES384) or
Ed25519 (EdDSA).
``coproduction run`` (the development launcher) makes its own under ``var/secrets/`` and hands them
to the processes it starts; nothing else ever generates one.
"""
from __future__ import annotations

import json
import os
import secrets
from pathlib import Path

from joserfc.errors import JoseError
from joserfc.jwk import ECKey, OKPKey, import_key

#: the signing algorithm that goes with each kind of key the gateway may sign its tokens with
SIGNING_ALGORITHMS = {("EC", "P-256"): "ES256", ("EC", "P-384"): "ES384", ("OKP", "Ed25519"): "EdDSA"}

MIN_BYTES = 32
#: values that have been published (examples, old defaults): knowing them must not be enough
KNOWN_DEFAULTS = frozenset({
    "change-me-to-a-long-random-secret-of-32-bytes-or-more",
    "changeme", "change-me", "secret", "password", "coproduction",
})


class ConfigurationError(RuntimeError):
    """A setting a process cannot start without is missing or unsafe."""


def read(name: str) -> str | None:
    """The raw value of ``NAME`` or of the file ``NAME_FILE`` names (None if neither is set)."""
    value, path = os.environ.get(name), os.environ.get(f"{name}_FILE")
    if value and path:
        raise ConfigurationError(f"set {name} or {name}_FILE, not both")
    if path:
        try:
            return Path(path).read_text().strip()
        except OSError as exc:
            raise ConfigurationError(f"{name}_FILE names {path}, which cannot be read: {exc}") from None
    return value or None


def check(name: str, value: str | None, min_bytes: int = MIN_BYTES) -> str:
    """``value`` if it is a usable secret for ``name``; otherwise a ConfigurationError saying why."""
    how = (f"set {name} (at least {min_bytes} random bytes, e.g. `openssl rand -base64 48`) in the "
           f"environment, or {name}_FILE to a file holding it")
    if not value:
        raise ConfigurationError(f"{name} is not set: {how}")
    lowered = value.strip().lower()
    if lowered in KNOWN_DEFAULTS or "change-me" in lowered or "changeme" in lowered:
        raise ConfigurationError(f"{name} is a published example value, not a secret: {how}")
    if len(value.encode()) < min_bytes:
        raise ConfigurationError(f"{name} is {len(value.encode())} bytes; it must be at least {min_bytes}: {how}")
    return value


def require(name: str, min_bytes: int = MIN_BYTES) -> str:
    return check(name, read(name), min_bytes)


def signing_key(name: str, value: str | None) -> tuple[ECKey | OKPKey, str]:
    """(the private key, its algorithm) from a PEM or JWK ``value``; a ConfigurationError naming
    ``name`` when it is missing, not a private key, or of a kind we do not sign with."""
    how = (f"set {name} to a private key (PEM or JWK; EC P-256, P-384 or Ed25519, e.g. `openssl genpkey "
           f"-algorithm EC -pkeyopt ec_paramgen_curve:P-256`), or {name}_FILE to a file holding it")
    if not value:
        raise ConfigurationError(f"{name} is not set: {how}")
    key = _import_private_key(value)
    if key is None:
        raise ConfigurationError(f"{name} is not a PEM or JWK key of a kind the gateway signs with: {how}")
    algorithm = SIGNING_ALGORITHMS.get((key.key_type, key.as_dict(private=False).get("crv")))
    if algorithm is None:
        raise ConfigurationError(f"{name} is a key of a kind the gateway does not sign with: {how}")
    if not key.is_private:
        raise ConfigurationError(f"{name} is a public key; the gateway needs its private key: {how}")
    return key, algorithm


def _import_private_key(value: str) -> ECKey | OKPKey | None:
    text = value.strip()
    try:
        if text.startswith("{"):
            data = json.loads(text)
            return import_key(data, data.get("kty")) if data.get("kty") in ("EC", "OKP") else None
    except (JoseError, ValueError, TypeError, AttributeError):
        return None
    if "-----BEGIN" not in text:
        return None
    for kind in (ECKey, OKPKey):
        try:
            return kind.import_key(text)
        except (JoseError, ValueError, TypeError):
            continue
    return None


def development(var: Path, names: tuple[str, ...]) -> dict[str, str]:
    """For ``coproduction run`` only: a random value per name, kept under ``var/secrets/`` so a
    restart keeps sessions and tokens valid. A value already in the environment is kept."""
    folder = var / "secrets"
    folder.mkdir(parents=True, exist_ok=True)
    folder.chmod(0o700)
    out = {}
    for name in names:
        if read(name):
            continue
        path = folder / name.lower()
        if not path.exists():
            path.write_text(secrets.token_urlsafe(48))
            path.chmod(0o600)
        out[name] = path.read_text().strip()
    return out


def development_signing_key(var: Path, name: str = "OAUTH_SIGNING_KEY") -> dict[str, str]:
    """For ``coproduction run`` only: an EC P-256 private key (PEM) kept under ``var/secrets/``,
    unless the environment already names one."""
    if read(name):
        return {}
    folder = var / "secrets"
    folder.mkdir(parents=True, exist_ok=True)
    folder.chmod(0o700)
    path = folder / f"{name.lower()}.pem"
    if not path.exists():
        path.write_bytes(ECKey.generate_key("P-256").as_pem(private=True))
        path.chmod(0o600)
    return {name: path.read_text().strip()}
