"""The production stack (compose.yaml) on a real Docker engine, for the compose stack tests.

The engine is the machine's own if one answers; otherwise dockerd is started with the flags a
sandboxed machine allows, and only that process is stopped afterwards. Base images are made here
(scripts/local-images.sh) and substituted through deploy/compose.local-images.yaml, because no
registry can be reached; nothing else of compose.yaml changes.
"""
from __future__ import annotations

import json
import os
import secrets
import subprocess
import time
from contextlib import contextmanager
from pathlib import Path
from types import SimpleNamespace

import requests
from joserfc.jwk import ECKey

from harness import ROOT, signing_key_pem, wait_for
from load import Writer
from oauth_client import access_token, jwks_of, new_key

DOCKERD_FLAGS = ["--iptables=false", "--ip6tables=false", "--ip-forward=false", "--bridge=none",
                 "--storage-driver=overlay2"]
GATEWAY = "http://127.0.0.1:8000"
#: one client per role, each of its own organisation, as `coproduction run` registers them
ROLE_ORGS = {"gp": "A81001", "community": "COMM01", "social_care": "LA0001", "hospital": "RX001"}


def _run(argv, **kwargs) -> subprocess.CompletedProcess:
    return subprocess.run(argv, capture_output=True, text=True, cwd=ROOT, **kwargs)


def _engine_answers() -> bool:
    return _run(["docker", "info"]).returncode == 0


class Engine:
    """A Docker engine for the test's duration: started only if none answers, and then stopped."""

    def __init__(self, log: Path):
        self.log = log
        self.process: subprocess.Popen | None = None

    def __enter__(self) -> "Engine":
        install = _run(["bash", "scripts/install-docker.sh"])
        assert install.returncode == 0, install.stderr[-3000:]
        if not _engine_answers():
            self.process = subprocess.Popen(["nice", "-n", "10", "dockerd", *DOCKERD_FLAGS],
                                            stdout=self.log.open("wb"), stderr=subprocess.STDOUT)
            wait_for(_engine_answers, timeout=60, interval=0.5, message=f"dockerd answering ({self.log})")
        images = _run(["bash", "scripts/local-images.sh"])
        assert images.returncode == 0, images.stderr[-3000:]
        return self

    def __exit__(self, *exc) -> None:
        if self.process is not None:
            self.process.terminate()
            try:
                self.process.wait(timeout=60)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()


def site_env() -> dict:
    """What a site puts in its .env (fresh secrets for each run)."""
    return {"SERVICE_TOKEN_SECRET": secrets.token_urlsafe(36), "SESSION_SECRET": secrets.token_urlsafe(36),
            "AUDIT_SIGNING_KEY": signing_key_pem(),
            "OAUTH_SIGNING_KEY": json.dumps(ECKey.generate_key("P-256").as_dict(private=True)),
            "PUBLIC_URL": GATEWAY, "POSTGRES_PASSWORD": secrets.token_urlsafe(18),
            "RABBITMQ_PASSWORD": secrets.token_urlsafe(18), "RABBITMQ_ERLANG_COOKIE": secrets.token_hex(20)}


class Stack:
    """One compose project: compose.yaml (and compose.cluster.yaml with ``cluster``), each with the
    override putting local images in place of the official ones."""

    def __init__(self, project: str, cluster: bool = False):
        self.project = project
        self.files = ["compose.yaml", "deploy/compose.local-images.yaml"]
        if cluster:
            self.files += ["compose.cluster.yaml", "deploy/compose.cluster.local-images.yaml"]
        self.env = dict(os.environ, **site_env(), COMPOSE_PROJECT_NAME=project)

    def compose(self, *args: str, check: bool = True, input: str | None = None) -> subprocess.CompletedProcess:
        argv = ["nice", "-n", "10", "docker-compose"]
        for f in self.files:
            argv += ["-f", f]
        out = _run([*argv, *args], env=self.env, input=input)
        assert not check or out.returncode == 0, (args, out.stdout[-3000:], out.stderr[-3000:])
        return out

    def up(self) -> float:
        """Build and start everything; the seconds until every container is healthy."""
        start = time.monotonic()
        self.compose("up", "-d", "--build")
        self.wait_healthy()
        return round(time.monotonic() - start, 1)

    def containers(self) -> dict[str, dict]:
        ids = self.compose("ps", "-q").stdout.split()
        inspected = json.loads(_run(["docker", "inspect", *ids]).stdout) if ids else []
        return {c["Config"]["Labels"]["com.docker.compose.service"]: c for c in inspected}

    def unhealthy(self) -> list[str]:
        """Services not yet running and healthy (the migrate job: not yet exited 0)."""
        waiting = []
        for name, c in self.containers().items():
            state = c["State"]
            if name == "migrate":
                if state["Status"] != "exited" or state["ExitCode"] != 0:
                    waiting.append(f"{name}: {state['Status']} {state['ExitCode']}")
            elif state["Status"] != "running" or state.get("Health", {}).get("Status", "healthy") != "healthy":
                waiting.append(f"{name}: {state['Status']} {state.get('Health', {}).get('Status')}")
        return waiting

    def wait_healthy(self, timeout: float = 300) -> None:
        try:
            wait_for(lambda: not self.unhealthy(), timeout=timeout, interval=1, message="every container healthy")
        except AssertionError as exc:
            raise AssertionError(f"{exc}: {self.unhealthy()}\n{self.logs()[-4000:]}") from None

    def logs(self, *services: str) -> str:
        return self.compose("logs", "--no-color", "--tail", "40", *services, check=False).stdout

    def kill(self, service: str) -> None:
        self.compose("kill", service)

    def start(self, service: str) -> None:
        self.compose("start", service)

    def exec(self, service: str, *argv: str, input: str | None = None) -> str:
        return self.compose("exec", "-T", service, *argv, input=input).stdout

    def sql(self, database: str, query: str) -> str:
        return self.exec("postgres", "psql", "-U", "coproduction", "-d", database, "-tAc", query).strip()

    def down(self) -> None:
        self.compose("down", "-v", "--remove-orphans", check=False)

    # -- clients ---------------------------------------------------------------------------
    def register(self, role: str) -> str:
        """A client of ``role`` with its own key; returns an OAuth access token for it."""
        key = new_key("ES384")
        out = self.exec("gateway-web", "coproduction", "clients", "create", "--name", f"stack {role}",
                        "--org", ROLE_ORGS[role], "--role", role, "--jwks-file", "/dev/stdin",
                        input=json.dumps(jwks_of(key)))
        return access_token(GATEWAY, out.split()[-1], key)["access_token"]

    def tokens(self) -> dict[str, str]:
        return {role: self.register(role) for role in ROLE_ORGS}


@contextmanager
def running_stack(workdir: Path, project: str, cluster: bool = False):
    """A stack built, up and healthy for the block (its start-up seconds in ``up_seconds``), then
    taken down with its volumes; the engine too, if this started it."""
    with Engine(workdir / "dockerd.log"):
        stack = Stack(project, cluster=cluster)
        stack.down()  # what a run that was interrupted left
        try:
            stack.up_seconds = stack.up()
            yield stack
        finally:
            stack.down()


def wait_gateway(timeout: float = 60) -> None:
    wait_for(lambda: _get_ok(f"{GATEWAY}/readyz"), timeout=timeout, interval=0.5, message="gateway /readyz")


def _get_ok(url: str) -> bool:
    try:
        return requests.get(url, timeout=3).status_code == 200
    except requests.RequestException:
        return False


def writer(token: str, total: int, offset: int) -> Writer:
    """tests/load.py's careful client, writing plans through the published gateway port."""
    return Writer(SimpleNamespace(url=GATEWAY, tokens={"gp": token}, env={}), total, threads=4, offset=offset)
