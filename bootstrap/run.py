"""``coproduction run``: every process of the platform on this machine, stopped together on Ctrl-C."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

import requests

from coproduction import secrets
from coproduction.config import Settings, var_dir
from coproduction.service import gateway_spec, load, service_names

from . import launcher

#: one development client per role, each of its own organisation (care relationships are kept per
#: organisation: one shared code would give every role the GP's relationships)
DEV_ORGS = {"hospital": "RDEV1", "gp": "GDEV1", "social_care": "SDEV1", "community": "CDEV1", "admin": "ADEV1"}
DEV_SECRETS = ("SERVICE_TOKEN_SECRET", "SESSION_SECRET")


def dev_clients() -> dict[str, str]:
    """One development client per role, kept under var/ so a restart prints the same tokens."""
    path = var_dir() / "dev-clients.json"
    tokens = launcher.create_clients("development", DEV_ORGS, json.loads(path.read_text()) if path.exists() else {})
    path.write_text(json.dumps(tokens, indent=2))
    path.chmod(0o600)
    return tokens


def run_all(services: list[str]) -> int:
    unknown = set(services) - set(service_names())
    if unknown:
        print(f"no such service: {', '.join(sorted(unknown))}", file=sys.stderr)
        return 2
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
    launcher.migrate(services)
    tokens = dev_clients()
    procs = [(label, launcher.start(argv, env)) for label, argv in launcher.processes(services)]

    stopping = False

    def stop(*_):
        nonlocal stopping
        stopping = True

    signal.signal(signal.SIGINT, stop)
    signal.signal(signal.SIGTERM, stop)
    gateway_url = f"http://127.0.0.1:{gateway_spec().port}"
    _wait_ready(gateway_url + "/readyz", procs)
    settings = Settings.from_env("gateway")
    print(f"""
coproduction is running ({'RabbitMQ' if settings.broker_url.startswith('amqp') else 'filesystem bus under var/bus'},
{'PostgreSQL' if settings.database_url.startswith('postgresql') else 'SQLite files under var/'}).

  gateway API     {gateway_url}/v1/...      interactive docs: {gateway_url}/docs
  services        {', '.join(f'{s} :{load(s).port}' for s in services)}

development clients (Authorization: Bearer <token>; static tokens, for development only:
production clients get OAuth access tokens from {gateway_url}/oauth2/token, see docs/auth.md):""", flush=True)
    for role, token in tokens.items():
        print(f"  {role:<12} {token}")
    print(f"\ntry:  curl -H 'Authorization: Bearer {tokens['gp']}' {gateway_url}/v1/people/9434765919/portfolio\n"
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
