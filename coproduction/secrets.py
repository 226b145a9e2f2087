"""Secrets and keys: each from the environment (``NAME``) or a file (``NAME_FILE``), never a default.

A process that needs a secret refuses to start without a good one: missing, a value published
somewhere (a documentation example, an old compose default), or shorter than 32 bytes.
``coproduction run`` (the development launcher) makes its own under ``var/secrets/`` and hands them
to the processes it starts; nothing else ever generates one.
"""
from __future__ import annotations

import os
import secrets
from pathlib import Path

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
