"""Everything the bench takes from the platform's composition, in one module: when the launcher
moves (issue 16: one launcher for ``coproduction run``, the tests and the bench), only this changes.
"""
from __future__ import annotations

import sys
from pathlib import Path
from typing import Callable

#: the clients the bench calls the gateway as
ROLES = ("hospital", "gp", "admin")


def command(*argv: str) -> list[str]:
    """The argv of a ``coproduction`` subcommand, run by this interpreter."""
    return [sys.executable, "-m", "coproduction.cli", *argv]


def development_secrets(var: Path) -> dict[str, str]:
    """The secrets and signing keys ``coproduction run`` makes for development, made afresh under var."""
    from coproduction import secrets
    from coproduction.run import DEV_SECRETS
    from gateway import audit_keys
    return {**secrets.development(var, DEV_SECRETS), **audit_keys.development_key(var),
            **secrets.development_signing_key(var)}


def launch(services: list[str], spawn: Callable[[str, list[str], str | None], object]) -> dict[str, str]:
    """Start the platform as ``coproduction run`` does; return one client's token per role.

    Every schema is migrated, then ``spawn(label, argv, name of the port it serves on)`` starts each
    process: the web processes, the relays, the consumer and the webhook dispatcher. Not the audit
    sequencer: the bench's figures have always been measured without it.
    """
    from coproduction.config import Settings
    from coproduction.web import migrate
    from gateway import clients
    from gateway.app import database
    for name in ("gateway", *services):
        migrate(name)
    db = database(Settings.from_env("gateway"))
    try:
        tokens = {role: clients.create(db, f"bench {role}", "BENCH1", role)[1] for role in ROLES}
    finally:
        db.dispose()
    for name in services:
        spawn(f"{name}-web", command("serve", name), name)
        spawn(f"{name}-relay", command("relay", name), None)
    spawn("gateway-web", command("serve", "gateway"), "gateway")
    spawn("gateway-consumer", command("consume"), None)
    spawn("gateway-deliver", command("deliver"), None)
    return tokens


def nhs_numbers(count: int, start: int = 0) -> list[str]:
    """The NHS numbers ``coproduction seed`` gives its people, count of them from start onwards."""
    from coproduction.seed import nhs_numbers as seeded
    return seeded(count, start)
