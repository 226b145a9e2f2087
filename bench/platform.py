"""The platform under test, as processes: its environment, ports, databases, start and clean-up.

Everything runs against the local PostgreSQL and RabbitMQ under a fresh ``bench<hex>`` prefix
(schemas, queue and exchange names, a temporary var directory), removed afterwards.
"""
from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

import requests

from coproduction.service import service_names

from . import launcher
from .timing import log, wait_until

ROOT = Path(__file__).resolve().parent.parent
PG_URL = os.environ.get("BENCH_DATABASE_URL", "postgresql://root@127.0.0.1:5432/test")
AMQP_URL = os.environ.get("BENCH_BROKER_URL", "amqp://guest:guest@127.0.0.1:5672//")
QUEUES = ("gateway.portfolio", "gateway.portfolio.retry", "gateway.portfolio.dead", "bench.raw", "bench.hop")
EXCHANGES = ("coproduction.events", "coproduction.dead", "bench.raw", "bench.hop")
PROJECTED = "SELECT count(*) FROM inbox WHERE consumer = 'gateway.portfolio'"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Platform:
    """The gateway, the services and their workers, plus the bare baseline app, each a process."""

    def __init__(self, workers: int):
        self.workers = workers
        self.tag = "bench" + uuid.uuid4().hex[:8]
        self.var = Path(tempfile.mkdtemp(prefix=self.tag + "-"))
        self.services = list(service_names())
        self.ports = {name: free_port() for name in ("gateway", "gateway-2", *self.services, "baseline")}
        self.gateway = f"http://127.0.0.1:{self.ports['gateway']}"
        self.baseline = f"http://127.0.0.1:{self.ports['baseline']}"
        self.baseline_schema = self.tag + "_baseline"
        #: the application_name of every gateway web backend in PostgreSQL (the lock sampler's key)
        self.web_name = self.tag + "-web"
        settings = {
            "DATABASE_URL": PG_URL, "DB_SCHEMA_PREFIX": self.tag + "_",
            "BROKER_URL": AMQP_URL, "BUS_PREFIX": self.tag + ".",
            "VAR_DIR": str(self.var), **launcher.development_secrets(self.var),
            # the bench's clients use static tokens, as the history of its figures did
            "ALLOW_STATIC_TOKENS": "1",
            "RATE_LIMIT": "100000000 per minute", "WEB_WORKERS": str(workers),
            # counted in Redis as in compose: the gateway then runs sync workers like every other
            # web process (with counts in memory it would be one process of threads)
            "RATE_LIMIT_STORAGE_URI": os.environ.get("BENCH_RATE_LIMIT_STORAGE_URI", "redis://127.0.0.1:6379/0"),
            "BASELINE_DATABASE_URL": PG_URL, "BASELINE_SCHEMA": self.baseline_schema,
            "PYTHONUNBUFFERED": "1",
            **{f"{name.upper()}_URL": f"http://127.0.0.1:{self.ports[name]}" for name in ("gateway", *self.services)},
        }
        self.env = {**os.environ, **settings}
        os.environ.update(settings)  # the migrations and the clients are made in this process
        self.procs: dict[str, subprocess.Popen] = {}
        self.tokens: dict[str, str] = {}
        self.oauth: launcher.OAuthClient | None = None

    # processes ----------------------------------------------------------------------------------
    def spawn(self, label: str, argv: list[str], port_of: str | None = None,
              extra_env: dict[str, str] | None = None) -> subprocess.Popen:
        """Start argv in a session of its own, logging to var/<label>.log, serving on port_of's port."""
        env = {**self.env, **(extra_env or {})}
        if port_of:
            env["PORT"] = str(self.ports[port_of])
        out = open(self.var / f"{label}.log", "ab")
        proc = subprocess.Popen(argv, env=env, cwd=ROOT, stdout=out, stderr=subprocess.STDOUT,
                                start_new_session=True)
        self.procs[label] = proc
        return proc

    def stop(self, label: str, timeout: float = 20) -> None:
        proc = self.procs.pop(label, None)
        if proc is None or proc.poll() is not None:
            return
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()

    def check_alive(self) -> None:
        dead = [f"{label} (exit {p.returncode})" for label, p in self.procs.items() if p.poll() is not None]
        if dead:
            tails = "\n".join(f"--- {d.split()[0]}.log\n" + self.tail(d.split()[0]) for d in dead)
            raise RuntimeError(f"stopped unexpectedly: {', '.join(dead)}\n{tails}")

    def tail(self, label: str, lines: int = 15) -> str:
        path = self.var / f"{label}.log"
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:]) if path.exists() else ""

    def run_cli(self, *argv: str, timeout: float = 1800) -> str:
        """Run a coproduction subcommand to completion; its output is echoed and returned."""
        started = time.monotonic()
        proc = subprocess.Popen(launcher.command(*argv), env=self.env, cwd=ROOT,
                                stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        lines = []
        for line in proc.stdout:
            lines.append(line)
            if line.strip():
                print("    " + line.rstrip(), flush=True)
        proc.wait(timeout=max(1, timeout - (time.monotonic() - started)))
        if proc.returncode != 0:
            raise RuntimeError(f"coproduction {' '.join(argv)} failed (exit {proc.returncode})")
        return "".join(lines)

    def admit(self, http: requests.Session, nhs: str) -> None:
        """Declare the hospital client's admission of the person: what its reads of them rest on."""
        body = {"kind": "admission", "encounter_id": "BENCH-ADM", "reason": "Admitted for the bench"}
        r = http.post(f"{self.gateway}/v1/people/{nhs}/relationships", json=body,
                      headers={"Authorization": f"Bearer {self.tokens['hospital']}"})
        if r.status_code != 201:
            raise RuntimeError(f"POST /v1/people/{nhs}/relationships answered {r.status_code}: {r.text[:300]}")

    # databases ----------------------------------------------------------------------------------
    def pg(self, schema: str):
        """An autocommit connection to one of the bench's schemas (gateway, plans, …)."""
        import psycopg
        return psycopg.connect(PG_URL, autocommit=True, options=f"-csearch_path={self.tag}_{schema}")

    def scalar(self, schema: str, sql: str, params=()):
        with self.pg(schema) as conn:
            return conn.execute(sql, params).fetchone()[0]

    def outbox_total(self) -> int:
        return sum(self.scalar(s, "SELECT count(*) FROM outbox") for s in self.services)

    def projected(self) -> int:
        return self.scalar("gateway", PROJECTED)

    # start and clean up -------------------------------------------------------------------------
    def start(self) -> None:
        self.tokens = launcher.launch(self.services, self.spawn, self.web_name)
        from bench.baseline_app import create_schema
        create_schema(PG_URL, self.baseline_schema)
        self.spawn("baseline-web", [sys.executable, "-m", "bench.baseline_app", "--port",
                                    str(self.ports["baseline"]), "--workers", str(self.workers)])
        for name in ("gateway", "baseline", *self.services):
            url = f"http://127.0.0.1:{self.ports[name]}/healthz"
            wait_until(lambda: requests.get(url, timeout=2).ok, 60, f"{name} web")
        self.check_alive()
        self.oauth = launcher.OAuthClient(self.gateway)
        log(f"platform up: gateway :{self.ports['gateway']}, {', '.join(self.services)}, relays, consumer, "
            f"audit sequencer; baseline :{self.ports['baseline']} ({self.workers} sync workers each)")

    def cleanup(self) -> None:
        for label in list(self.procs):
            self.stop(label, timeout=10)
        self._drop_schemas()
        self._delete_bus_names()
        shutil.rmtree(self.var, ignore_errors=True)

    def _drop_schemas(self) -> None:
        try:
            import psycopg
            with psycopg.connect(PG_URL, autocommit=True) as conn:
                schemas = [r[0] for r in conn.execute(
                    "SELECT nspname FROM pg_namespace WHERE nspname LIKE %s", (self.tag + "\\_%",))]
                for schema in schemas:
                    conn.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')
        except Exception as exc:
            log(f"cleanup: could not drop the bench schemas: {exc}")

    def _delete_bus_names(self) -> None:
        try:
            import amqp
            conn = amqp.Connection("127.0.0.1:5672", userid="guest", password="guest")
            conn.connect()
            try:
                for kind, names in (("queue", QUEUES), ("exchange", EXCHANGES)):
                    for name in names:
                        ch = conn.channel()
                        try:
                            (ch.queue_delete if kind == "queue" else ch.exchange_delete)(self.tag + "." + name)
                            ch.close()
                        except amqp.exceptions.NotFound:
                            pass
            finally:
                conn.close()
        except Exception as exc:
            log(f"cleanup: could not delete the bench queues: {exc}")
