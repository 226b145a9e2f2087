"""Starting the platform: the steps ``coproduction run`` and the tests' harness share.

Which parts start, in what order and as which processes comes from the registry of parts
(``coproduction.service``): each part's web server and the workers its spec declares.
"""
from __future__ import annotations

import subprocess
import sys

from coproduction.migrate import upgrade
from coproduction.service import PartSpec, gateway_spec, load

#: how every process of the platform is started: the one command line, by module
CLI = (sys.executable, "-m", "bootstrap.cli")


def command(*argv: str) -> list[str]:
    return [*CLI, *argv]


def start(argv: list[str], env: dict, **popen) -> subprocess.Popen:
    """One process of the platform (``argv``: its subcommand and arguments)."""
    return subprocess.Popen(command(*argv), env=env, **popen)


def with_gateway(services) -> list[PartSpec]:
    """The gateway and ``services``: what a platform of those services runs."""
    return [gateway_spec(), *map(load, services)]


def migrate(services) -> None:
    """Every database of the gateway and ``services`` brought up to date, the gateway's first."""
    for spec in with_gateway(services):
        upgrade(spec.name)


def processes(services) -> list[tuple[str, list[str]]]:
    """(label, CLI arguments) of every process: each service's web server and workers, then the
    gateway's (it serves once the services it forwards to are starting)."""
    out = []
    for spec in [*map(load, services), gateway_spec()]:
        out.append((f"{spec.name}-web", ["serve", spec.name]))
        out += [(worker.label, list(worker.argv)) for worker in spec.workers]
    return out


def create_clients(name: str, orgs: dict[str, str], kept: dict[str, str] | None = None) -> dict[str, str]:
    """A client of the gateway for each role in ``orgs`` (role -> its organisation's code), named
    ``"<name> <role>"``; a token in ``kept`` that still authenticates is kept. Role -> token."""
    from coproduction.config import Settings
    from gateway import clients
    spec = gateway_spec()
    db = spec.database(Settings.from_env(spec.name))
    tokens = dict(kept or {})
    try:
        for role, org in orgs.items():
            token = tokens.get(role)
            if token is None or clients.authenticate(db, token) is None:
                _id, tokens[role] = clients.create(db, f"{name} {role}", org, role)
    finally:
        db.dispose()
    return tokens
