"""``coproduction run``: every process of the platform on this machine, stopped together on Ctrl-C."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import requests

from . import secrets
from .config import SERVICE_PORTS, Settings, var_dir

#: one development client per role, each of its own organisation (care relationships are kept per
#: organisation: one shared code would give every role the GP's relationships)
DEV_ORGS = {"hospital": "RDEV1", "gp": "GDEV1", "social_care": "SDEV1", "community": "CDEV1", "admin": "ADEV1"}
DEV_SECRETS = ("SERVICE_TOKEN_SECRET", "SESSION_SECRET")


def available(services: list[str]) -> list[str]:
    root = Path(__file__).resolve().parent.parent / "services"
    return [s for s in services if (root / s / "app.py").exists()]


def dev_clients() -> dict[str, str]:
    """One development client per role, kept under var/ so a restart prints the same tokens."""
    from gateway import clients
    from gateway.app import database
    db = database(Settings.from_env("gateway"))
    path = var_dir() / "dev-clients.json"
    tokens = json.loads(path.read_text()) if path.exists() else {}
    for role, org in DEV_ORGS.items():
        token = tokens.get(role)
        if token is None or clients.authenticate(db, token) is None:
            _id, tokens[role] = clients.create(db, f"development {role}", org, role)
    path.write_text(json.dumps(tokens, indent=2))
    path.chmod(0o600)
    db.dispose()
    return tokens


def run_all(services: list[str]) -> int:
    from .web import migrate
    services = available(services)
    env = dict(os.environ)
    env.setdefault("ALLOW_LOOPBACK_WEBHOOKS", "1")
    env.setdefault("ALLOW_LOOPBACK_JWKS_URI", "1")
    env.setdefault("ALLOW_STATIC_TOKENS", "1")  # the development clients' tokens printed below
    env.setdefault("VAR_DIR", str(var_dir()))
    env.update(secrets.development(var_dir(), DEV_SECRETS))  # development only: made here, kept in var/
    from gateway.audit import keys as audit_keys
    env.update(audit_keys.development_key(var_dir()))
    env.update(secrets.development_signing_key(var_dir()))
    os.environ.update(env)
    for name in ["gateway", *services]:
        migrate(name)
    tokens = dev_clients()
    commands = []
    for name in services:
        commands += [[name + "-web", "serve", name], [name + "-relay", "relay", name]]
    commands += [["gateway-web", "serve", "gateway"], ["gateway-consumer", "consume"],
                 ["gateway-deliver", "deliver"], ["gateway-audit-sequencer", "audit", "sequence"]]
    procs: list[tuple[str, subprocess.Popen]] = []
    for label, *argv in commands:
        procs.append((label, subprocess.Popen([sys.executable, "-m", "coproduction.cli", *argv], env=env)))

    stopping = False

    def stop(*_):
        nonlocal stopping
        stopping = True

    signal.signal(signal.SIGINT, stop)
    signal.signal(signal.SIGTERM, stop)
    gateway = f"http://127.0.0.1:{SERVICE_PORTS['gateway']}"
    _wait_ready(gateway + "/readyz", procs)
    settings = Settings.from_env("gateway")
    print(f"""
coproduction is running ({'RabbitMQ' if settings.broker_url.startswith('amqp') else 'filesystem bus under var/bus'},
{'PostgreSQL' if settings.database_url.startswith('postgresql') else 'SQLite files under var/'}).

  gateway API     {gateway}/v1/...      interactive docs: {gateway}/docs
  services        {', '.join(f'{s} :{SERVICE_PORTS[s]}' for s in services)}

development clients (Authorization: Bearer <token>; static tokens, for development only:
production clients get OAuth access tokens from {gateway}/oauth2/token, see docs/auth.md):""", flush=True)
    for role, token in tokens.items():
        print(f"  {role:<12} {token}")
    print(f"\ntry:  curl -H 'Authorization: Bearer {tokens['gp']}' {gateway}/v1/people/9434765919/portfolio\n"
          "Ctrl-C stops everything.", flush=True)

    code = 0
    while not stopping:
        for label, proc in procs:
            if proc.poll() is not None:
                print(f"{label} stopped (exit {proc.returncode}); stopping the rest", file=sys.stderr)
                stopping, code = True, 1
                break
        time.sleep(0.3)
    for _label, proc in procs:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
    deadline = time.monotonic() + 15
    for _label, proc in procs:
        try:
            proc.wait(timeout=max(0.1, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            proc.kill()
    print("stopped", flush=True)
    return code


def _wait_ready(url: str, procs, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if any(p.poll() is not None for _l, p in procs):
            return
        try:
            if requests.get(url, timeout=1).status_code == 200:
                return
        except requests.RequestException:
            pass
        time.sleep(0.2)
