"""Running the platform for tests: real HTTP servers, real RabbitMQ and PostgreSQL.

``Platform`` starts each part either in this process (a thread per server, relay and consumer:
fast) or as the very processes ``coproduction run`` starts (for killing them), through the same
launcher (``bootstrap.launcher``: migrations, clients, process command lines). Each platform gets
its own PostgreSQL schemas and its own RabbitMQ name prefix, so tests never see each other.
"""
from __future__ import annotations

import os
import random
import socket
import subprocess
import threading
import time
import uuid
from pathlib import Path

import requests
from joserfc.jwk import ECKey
from werkzeug.serving import make_server

from coproduction.bus import Bus, Publisher
from coproduction.config import Settings, make_bus
from coproduction.outbox import Relay
from coproduction.service import gateway_spec, load, part_names

from bootstrap import launcher

ROOT = Path(__file__).resolve().parent.parent
PG_URL = os.environ.get("TEST_DATABASE_URL", "postgresql://root@127.0.0.1:5432/test")
AMQP_URL = os.environ.get("TEST_BROKER_URL", "amqp://guest:guest@127.0.0.1:5672//")


#: below Linux's ephemeral range (32768-60999): a port the kernel hands out there as the local end
#: of some outgoing connection (a browser's, a client's) could take a server's port before it binds
SERVER_PORTS = range(20000, 32768)
_handed_out: set[int] = set()


def free_port() -> int:
    """A port no one listens on, outside the ephemeral range, not handed out before in this process."""
    rng = random.SystemRandom()
    while True:
        port = rng.choice(SERVER_PORTS)
        if port in _handed_out:
            continue
        with socket.socket() as s:
            try:
                s.bind(("127.0.0.1", port))
            except OSError:
                continue
        _handed_out.add(port)
        return port


def signing_key_pem() -> str:
    """A fresh Ed25519 key for a platform's audit log (PEM, as AUDIT_SIGNING_KEY takes it)."""
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
    return Ed25519PrivateKey.generate().private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()).decode()


def wait_for(condition, timeout: float = 20.0, interval: float = 0.02, message: str = "condition"):
    """Poll until condition() is truthy; return its value or fail saying what never happened."""
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        try:
            last = condition()
        except Exception as exc:  # the thing polled may not be up yet
            last = exc
        else:
            if last:
                return last
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout}s waiting for {message} (last: {last!r})")


class ThreadServer:
    def __init__(self, app, port: int):
        self.server = make_server("127.0.0.1", port, app, threaded=True)
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def stop(self):
        self.server.shutdown()
        self.server.server_close()


class Platform:
    def __init__(self, tmp_path: Path, services=("plans",), broker: str = "amqp", database: str = "postgres",
                 retry_delay_ms: int = 200, max_attempts: int = 3, extra_env: dict | None = None):
        self.tag = "t" + uuid.uuid4().hex[:10]
        self.services = list(services)
        # every service gets a port of its own, started or not: a call to one that is not running
        # here must be refused, never answered by some other process on the default port
        self.ports = {name: free_port() for name in part_names()}
        self.var = tmp_path / "var"
        self.var.mkdir(parents=True, exist_ok=True)
        env = {
            "VAR_DIR": str(self.var),
            "SERVICE_TOKEN_SECRET": "test-secret-must-be-long-enough-" + self.tag,
            "SESSION_SECRET": "test-session-secret-long-enough-" + self.tag,
            "AUDIT_SIGNING_KEY": signing_key_pem(),
            "RETRY_DELAY_MS": str(retry_delay_ms),
            "MAX_ATTEMPTS": str(max_attempts),
            "ALLOW_LOOPBACK_WEBHOOKS": "1",
            "RATE_LIMIT": "100000 per minute",
            # development settings, as `coproduction run` has them: the static tokens of
            # create_clients, a key of its own to sign access tokens, JWK Sets served on loopback
            "OAUTH_SIGNING_KEY": ECKey.generate_key("P-256").as_pem(private=True).decode(),
            "ALLOW_STATIC_TOKENS": "1",
            "ALLOW_LOOPBACK_JWKS_URI": "1",
        }
        if broker == "amqp":
            env.update(BROKER_URL=AMQP_URL, BUS_PREFIX=self.tag + ".")
        else:
            env.update(BROKER_URL=f"filesystem://{self.var / 'bus'}")
        if database == "postgres":
            env.update(DATABASE_URL=PG_URL, DB_SCHEMA_PREFIX=self.tag + "_")
        else:  # SQLite files under this platform's var/, whatever another platform set
            env.update(DATABASE_URL="", DB_SCHEMA_PREFIX="")
        for name, port in self.ports.items():
            env[f"{name.upper()}_URL"] = f"http://127.0.0.1:{port}"
        env.update(extra_env or {})
        self.env = env
        self._saved = {k: os.environ.get(k) for k in env}
        os.environ.update(env)
        self.servers: dict[str, ThreadServer] = {}
        self.threads: dict[str, tuple] = {}
        self.procs: dict[str, subprocess.Popen] = {}
        self.tokens: dict[str, str] = {}
        self.extra_queues: list[str] = []
        self._databases: list = []
        self.url = f"http://127.0.0.1:{self.ports[gateway_spec().name]}"
        self.http = requests.Session()

    # -- settings and parts ----------------------------------------------------------------
    def settings(self, name: str) -> Settings:
        return Settings.from_env(name)

    def bus(self) -> Bus:
        return make_bus(self.settings("gateway"))

    def database(self, name: str):
        db = load(name).database(self.settings(name))
        self._databases.append(db)
        return db

    def migrate(self):
        launcher.migrate(self.services)

    # -- in-thread parts -------------------------------------------------------------------
    def start_web(self, name: str):
        self.servers[name] = ThreadServer(load(name).create_app(self.settings(name)), self.ports[name])

    def restart_web(self, name: str, **env: str):
        """Stop an in-thread web server and start it again with ``env`` changed: a redeploy."""
        server = self.servers.pop(name)
        server.stop()
        server.server.app.extensions["coproduction"].db.dispose()
        for key in env:
            self._saved.setdefault(key, os.environ.get(key))  # restored by stop()
        self.env.update(env)
        os.environ.update(env)
        self.start_web(name)

    def start_relay(self, name: str):
        spec = load(name)
        relay = Relay(self.database(name), spec.outbox, Publisher(self.bus()))
        t = threading.Thread(target=relay.run, daemon=True)
        t.start()
        self.threads[name + "-relay"] = (relay, t)
        return relay

    def start_consumer(self):
        from gateway.consumer import make_consumer
        consumer = make_consumer(self.settings("gateway"), self.database("gateway"), self.bus())
        t = threading.Thread(target=consumer.run, daemon=True)
        t.start()
        self.threads["gateway-consumer"] = (consumer, t)
        wait_for(consumer.ready.is_set, message="the gateway consumer to be ready")
        return consumer

    def stop_thread_server(self, name: str):
        """Stop a web server running in this process (to serve its port from a real process)."""
        server = self.servers.pop(name)
        server.stop()
        server.server.app.extensions["coproduction"].db.dispose()

    def stop_thread(self, key: str):
        part, thread = self.threads.pop(key)
        part.stop()
        thread.join(timeout=10)

    def start_sequencer(self, **options):
        """The audit log's sequencer, in a thread (``spawn("sequencer", "audit", "sequence")`` for a process)."""
        from gateway.audit import keys as audit_keys
        from gateway.audit.sequencer import Sequencer
        sequencer = Sequencer(self.database("gateway"), audit_keys.signing_key(), **options)
        t = threading.Thread(target=sequencer.run, daemon=True)
        t.start()
        self.threads["gateway-sequencer"] = (sequencer, t)
        wait_for(sequencer.ready.is_set, message="the audit sequencer to be ready")
        return sequencer

    def start(self):
        """Everything in-thread: each service's web and relay, the gateway's web and consumer."""
        self.migrate()
        self.start_consumer()
        for name in self.services:
            self.start_web(name)
            self.start_relay(name)
        self.start_web("gateway")
        self.create_clients()
        return self

    # -- as real processes -----------------------------------------------------------------
    def spawn(self, key: str, *argv: str, port: int | None = None, env: dict | None = None) -> subprocess.Popen:
        env = {**os.environ, **self.env, "WEB_WORKERS": "1", **(env or {})}
        if port:
            env["PORT"] = str(port)
        log = open(self.var / f"{key}.log", "ab")
        proc = launcher.start(list(argv), env, cwd=ROOT, stdout=log, stderr=subprocess.STDOUT)
        self.procs[key] = proc
        return proc

    def spawn_web(self, name: str, env: dict | None = None):
        proc = self.spawn(name + "-web", "serve", name, port=self.ports[name], env=env)
        wait_for(lambda: requests.get(f"http://127.0.0.1:{self.ports[name]}/healthz", timeout=1).ok,
                 timeout=30, message=f"{name} web")
        return proc

    def kill(self, key: str, sig: int = 9):
        proc = self.procs.pop(key)
        proc.send_signal(sig)
        proc.wait(timeout=30)
        return proc.returncode

    def log(self, key: str) -> str:
        return (self.var / f"{key}.log").read_text(errors="replace")

    # -- clients ---------------------------------------------------------------------------
    def create_clients(self):
        roles = ("hospital", "gp", "social_care", "community", "admin")
        self.tokens.update(launcher.create_clients("test", {role: f"ORG{role[:3].upper()}" for role in roles}))

    def call(self, role: str | None, method: str, path: str, **kwargs) -> requests.Response:
        headers = kwargs.pop("headers", {})
        if role:
            headers.setdefault("Authorization", f"Bearer {self.tokens[role]}")
        return self.http.request(method, self.url + path, headers=headers, timeout=30, **kwargs)

    def admit(self, nhs: str, role: str = "hospital", kind: str = "admission") -> dict:
        """Give the role's organisation a care relationship with the person: a hospital admission
        (or, with kind="emergency", emergency access), as a client declares one."""
        body = {"kind": kind, "reason": "Admitted through the emergency department", "encounter_id": "ADM-1"}
        r = self.call(role, "POST", f"/v1/people/{nhs}/relationships", json=body)
        assert r.status_code == 201, r.text
        return r.json()

    def portfolio_shows(self, nhs: str, predicate, role: str = "admin", timeout: float = 20):
        def check():
            r = self.call(role, "GET", f"/v1/people/{nhs}/portfolio")
            return r.json() if r.status_code == 200 and predicate(r.json()) else None
        return wait_for(check, timeout=timeout, interval=0.05, message=f"the portfolio of {nhs}")

    # -- teardown --------------------------------------------------------------------------
    def stop(self):
        for key in list(self.threads):
            try:
                self.stop_thread(key)
            except Exception:
                pass
        for server in self.servers.values():
            server.stop()
            server.server.app.extensions["coproduction"].db.dispose()
        for db in self._databases:  # give PostgreSQL its connections back now, not at garbage collection
            db.dispose()
        for key, proc in list(self.procs.items()):
            if proc.poll() is None:
                proc.terminate()
                try:
                    proc.wait(timeout=15)
                except subprocess.TimeoutExpired:
                    proc.kill()
        self.http.close()
        for name in [gateway_spec().name, *self.services]:
            try:
                db = self.database(name)
                db.drop_schema()
                db.dispose()
            except Exception:
                pass
        if self.env.get("BUS_PREFIX"):
            delete_queues(self.env["BUS_PREFIX"], tuple(self.extra_queues))
        for k, v in self._saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


#: queues and exchanges a platform may declare; a test declaring others appends to Platform.extra_queues
KNOWN_QUEUES = ("gateway.portfolio", "gateway.portfolio.retry", "gateway.portfolio.dead", "observer")
KNOWN_EXCHANGES = ("coproduction.events", "coproduction.dead")


def delete_queues(prefix: str, extra: tuple = ()) -> None:
    """Remove a test's queues and exchanges by name, over AMQP (rabbitmqctl costs a whole VM start)."""
    import amqp
    conn = amqp.Connection("127.0.0.1:5672", userid="guest", password="guest")
    conn.connect()
    try:
        for kind, names in (("queue", (*KNOWN_QUEUES, *extra)), ("exchange", KNOWN_EXCHANGES)):
            for name in names:
                ch = conn.channel()
                try:
                    if kind == "queue":
                        ch.queue_delete(prefix + name)
                    else:
                        ch.exchange_delete(prefix + name)
                    ch.close()
                except amqp.exceptions.NotFound:
                    pass  # the broker closed the channel; the next name opens another
    finally:
        conn.close()
