"""compose.yaml, tested without a Docker engine: validated as a compose file, then every application
service started as a local process with its own command and environment (host names rewritten to
127.0.0.1, ports to free ones, databases and the vhost to this test's own), a full scenario run
through the gateway, and each process stopped with SIGTERM with nothing lost."""
from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import uuid

import psycopg
import pytest
import requests
import yaml
from joserfc.jwk import ECKey
from sqlalchemy import create_engine, text

from harness import ROOT, free_port, wait_for
from oauth_client import access_token, jwks_of, new_key

INFRA = {"postgres", "rabbitmq", "redis"}
#: one-shot jobs the long-running processes wait for (service_completed_successfully)
JOBS = {"migrate"}


#: what a site puts in its .env: compose refuses to start without the secrets
SITE_ENV = {"SERVICE_TOKEN_SECRET": "compose-test-service-token-" + "s" * 40,
            "SESSION_SECRET": "compose-test-session-secret-" + "t" * 40,
            "POSTGRES_PASSWORD": "coproduction", "RABBITMQ_PASSWORD": "coproduction",
            "OAUTH_SIGNING_KEY": json.dumps(ECKey.generate_key("P-256").as_dict(private=True)),
            "PUBLIC_URL": "https://gateway.example.org"}


def _site_env() -> dict:
    from harness import signing_key_pem
    return dict(SITE_ENV, AUDIT_SIGNING_KEY=signing_key_pem())


def compose(*args: str, env: dict | None = None) -> subprocess.CompletedProcess:
    environ = {k: v for k, v in os.environ.items() if not k.endswith("_SECRET")}
    return subprocess.run(["docker-compose", "-f", str(ROOT / "compose.yaml"), *args], capture_output=True,
                          text=True, cwd=ROOT, env=dict(environ, **(_site_env() if env is None else env)))


def compose_config() -> dict:
    out = compose("config")
    assert out.returncode == 0, out.stderr
    return yaml.safe_load(out.stdout)


def test_compose_refuses_to_start_without_the_secrets():
    site = _site_env()
    for missing in site:
        out = compose("config", "-q", env={k: v for k, v in site.items() if k != missing})
        assert out.returncode != 0 and f"set {missing}" in out.stderr, (missing, out.stderr)


def test_compose_file_is_valid_and_complete():
    out = compose("config", "-q")
    assert out.returncode == 0, out.stderr
    services = compose_config()["services"]
    for name in ("plans", "budgets", "decisions", "groups"):
        assert {f"{name}-web", f"{name}-relay"} <= set(services)
    assert {"gateway-web", "gateway-consumer", "gateway-deliver", "gateway-audit-sequencer", "postgres",
            "rabbitmq", "redis", "migrate"} <= set(services)
    # the schemas are migrated once, before any process that uses them starts
    for name, svc in services.items():
        if name not in INFRA | JOBS:
            assert svc["depends_on"]["migrate"] == {"condition": "service_completed_successfully"}, name
    assert services["gateway-web"]["environment"]["RATE_LIMIT_STORAGE_URI"].startswith("redis://redis:")
    for name, svc in services.items():
        assert svc.get("restart") == ("on-failure" if name in JOBS else "unless-stopped"), name
        assert svc.get("logging", {}).get("options", {}).get("max-size"), name  # logs rotate
        assert name in JOBS or svc.get("mem_limit"), name
        assert svc.get("stop_grace_period"), name
        if name not in INFRA:
            assert svc["environment"]["QUEUE_TYPE"] == "quorum"
            assert "ALLOW_LOOPBACK_WEBHOOKS" not in svc["environment"]  # compose never allows loopback callbacks
            # nor static development tokens, nor client keys fetched from loopback
            assert not {"ALLOW_STATIC_TOKENS", "ALLOW_LOOPBACK_JWKS_URI"} & set(svc["environment"]), name
            assert all(dep.get("condition") in ("service_healthy", "service_completed_successfully")
                       for dep in svc["depends_on"].values()), name
        if name.endswith("-web") or name in INFRA:
            assert svc.get("healthcheck"), name


class Rewriter:
    """Maps compose's host names and ports onto this machine, for this test alone."""

    def __init__(self, services: dict, tag: str):
        self.tag = tag
        self.ports = {}
        for name, svc in services.items():
            port = svc.get("environment", {}).get("PORT")
            if port:
                self.ports[port] = str(free_port())
        self.hosts = set(services)

    def env(self, environment: dict) -> dict:
        out = {}
        for key, value in environment.items():
            value = str(value)
            if key == "PORT":
                value = self.ports[value]
            elif key == "METRICS_PORT":
                value = str(free_port())
            elif key == "PUBLIC_URL":  # where this test's clients reach the gateway
                value = f"http://127.0.0.1:{self.ports['8000']}"
            value = re.sub(r"@postgres:5432/(\w+)", lambda m: f"@127.0.0.1:5432/{self.tag}_{m.group(1)}", value)
            value = re.sub(r"@rabbitmq:5672/$", f"@127.0.0.1:5672/{self.tag}", value)
            for host in self.hosts:
                value = re.sub(rf"//{re.escape(host)}:(\d+)", lambda m: f"//127.0.0.1:{self.ports.get(m.group(1), m.group(1))}", value)
            out[key] = value
        return out


@pytest.fixture
def compose_env(tmp_path):
    services = compose_config()["services"]
    tag = "c" + uuid.uuid4().hex[:8]
    rewriter = Rewriter(services, tag)
    databases = sorted({m.group(1) for svc in services.values()
                        for m in [re.search(r"@postgres:5432/(\w+)", str(svc.get("environment", {}).get("DATABASE_URL", "")))]
                        if m})
    with psycopg.connect("postgresql://root@127.0.0.1:5432/test", autocommit=True) as conn:
        if not conn.execute("SELECT 1 FROM pg_roles WHERE rolname = 'coproduction'").fetchone():
            conn.execute("CREATE ROLE coproduction LOGIN PASSWORD 'coproduction'")
        for db in databases:
            conn.execute(f'CREATE DATABASE "{tag}_{db}" OWNER coproduction')
    subprocess.run(["rabbitmqctl", "-q", "add_vhost", tag], check=True, capture_output=True)
    subprocess.run(["rabbitmqctl", "-q", "add_user", "coproduction", "coproduction"], capture_output=True)
    subprocess.run(["rabbitmqctl", "-q", "set_permissions", "-p", tag, "coproduction", ".*", ".*", ".*"],
                   check=True, capture_output=True)
    procs: dict[str, subprocess.Popen] = {}
    yield services, rewriter, procs, tmp_path
    for proc in procs.values():
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    with psycopg.connect("postgresql://root@127.0.0.1:5432/test", autocommit=True) as conn:
        for db in databases:
            conn.execute(f'DROP DATABASE IF EXISTS "{tag}_{db}" WITH (FORCE)')
    subprocess.run(["rabbitmqctl", "-q", "delete_vhost", tag], capture_output=True)


def _start(name, svc, rewriter, procs, tmp_path):
    env = {k: v for k, v in os.environ.items() if not k.startswith(("BROKER_", "DATABASE_", "BUS_", "DB_"))}
    env.update(rewriter.env(svc["environment"]))
    env["VAR_DIR"] = str(tmp_path / "var" / name)
    argv = list(svc["command"])
    assert argv[0] == "coproduction"
    log = open(tmp_path / f"{name}.log", "wb")
    procs[name] = subprocess.Popen([sys.executable, "-m", "bootstrap.cli", *argv[1:]], env=env, cwd=tmp_path,
                                   stdout=log, stderr=subprocess.STDOUT)
    return env


def test_every_service_of_compose_runs_a_full_scenario_and_stops_cleanly(compose_env):
    services, rewriter, procs, tmp_path = compose_env
    envs = {}
    for name in JOBS:
        env = {k: v for k, v in os.environ.items() if not k.startswith(("BROKER_", "DATABASE_", "BUS_", "DB_"))}
        env.update(rewriter.env(services[name]["environment"]))
        env["PATH"] = f"{os.path.dirname(sys.executable)}{os.pathsep}{env['PATH']}"
        job = subprocess.run(services[name]["command"], env=env, cwd=tmp_path, capture_output=True, text=True)
        assert job.returncode == 0, (name, job.stdout[-2000:], job.stderr[-2000:])
    apps = [n for n in services if n not in INFRA | JOBS]
    for name in sorted(apps, key=lambda n: 0 if n.endswith("-web") else 1):
        envs[name] = _start(name, services[name], rewriter, procs, tmp_path)
    for name in apps:
        if name.endswith("-web"):
            url = f"http://127.0.0.1:{envs[name]['PORT']}/readyz"
            wait_for(lambda: requests.get(url, timeout=2).status_code == 200, timeout=60,
                     message=f"{name} ready ({(tmp_path / (name + '.log')).read_text()[-2000:]})")
    gateway_env = envs["gateway-web"]
    base = f"http://127.0.0.1:{gateway_env['PORT']}"
    # compose is production: a static development token is refused, a client with keys gets in
    out = subprocess.run([sys.executable, "-m", "bootstrap.cli", "clients", "create", "--name", "dev",
                          "--org", "A81009", "--role", "gp"], env=gateway_env, capture_output=True, text=True, check=True)
    static = {"Authorization": f"Bearer {out.stdout.split()[-1]}"}
    assert requests.get(f"{base}/v1/plans?nhs_number=9434765919", headers=static, timeout=5).status_code == 401
    key = new_key("ES384")
    (tmp_path / "gp-jwks.json").write_text(json.dumps(jwks_of(key)))
    out = subprocess.run([sys.executable, "-m", "bootstrap.cli", "clients", "create", "--name", "GP",
                          "--org", "A81001", "--role", "gp", "--jwks-file", str(tmp_path / "gp-jwks.json")],
                         env=gateway_env, capture_output=True, text=True, check=True)
    token = access_token(base, out.stdout.split()[-1], key)["access_token"]
    auth = {"Authorization": f"Bearer {token}"}
    nhs = "9434765919"
    r = requests.post(f"{base}/v1/plans", headers=auth, json={
        "nhs_number": nhs, "priorities": [{"text": "Walk my grandson to school", "category": "physical_activity"}]})
    assert r.status_code == 201, r.text
    r = requests.post(f"{base}/v1/plans/{r.json()['id']}/agree", headers=dict(auth, **{"If-Match": '"1"'}),
                      json={"agreed_by": "Dr A Patel", "person_agreed": True})
    assert r.status_code == 200, r.text
    doc = wait_for(lambda: (lambda resp: resp.json() if resp.status_code == 200 and resp.json()["plan"]
                            and resp.json()["plan"]["status"] == "active" else None)(
        requests.get(f"{base}/v1/people/{nhs}/portfolio", headers=auth, timeout=5)), timeout=60,
        message="the portfolio, through every compose process")
    assert doc["priorities"][0]["text"] == "Walk my grandson to school"
    queues = subprocess.run(["rabbitmqctl", "-q", "list_queues", "-p", rewriter.tag, "name", "type"],
                            capture_output=True, text=True).stdout
    assert re.search(r"gateway\.portfolio\s+quorum", queues), queues

    head = wait_for(lambda: (lambda resp: resp.json() if resp.status_code == 200 and resp.json()["tree_size"] > 0
                             else None)(requests.get(f"{base}/v1/audit/tree-head", headers=auth, timeout=5)),
                    timeout=30, message="the audit sequencer's first signed tree head")
    assert len(head["signature"]) == 128 and head["public_key"] == "/v1/audit/public-key"

    for name, proc in procs.items():
        proc.send_signal(signal.SIGTERM)
    for name, proc in procs.items():
        assert proc.wait(timeout=40) == 0, (name, (tmp_path / f"{name}.log").read_text()[-3000:])
    engine = create_engine(envs["plans-relay"]["DATABASE_URL"].replace("postgresql://", "postgresql+psycopg://")
                           + "?options=-csearch_path%3Dplans")
    with engine.connect() as conn:
        assert conn.execute(text("SELECT count(*) FROM outbox WHERE sent_at IS NULL")).scalar_one() == 0
        sent = conn.execute(text("SELECT count(*) FROM outbox")).scalar_one()
    engine.dispose()
    engine = create_engine(gateway_env["DATABASE_URL"].replace("postgresql://", "postgresql+psycopg://")
                           + "?options=-csearch_path%3Dgateway")
    with engine.connect() as conn:
        assert conn.execute(text("SELECT count(*) FROM change_log")).scalar_one() == sent == 2
    engine.dispose()
