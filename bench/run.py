"""``make bench``: the platform's figures, each next to its raw baseline measured in the same run.

Everything runs on this machine against the local PostgreSQL and RabbitMQ, in schemas and queue
names of its own (a fresh ``bench<hex>`` prefix), cleaned up afterwards. The platform runs as the
very processes ``coproduction run`` starts (gunicorn sync workers, relays, the consumer); the
baseline is a bare Flask app under the same gunicorn settings. Load comes from wrk (16
connections), except where a figure is a sequence of single calls (write → visible).

The steps, in order:
 1. seed the detailed people (``coproduction seed``): relays and the consumer project them;
 2. reads at 16 connections: bare endpoint, portfolio, admission summary (interleaved rounds,
    best round of each: the least disturbed by whatever else runs on the machine);
 3. write → visible in the portfolio, against a bare POST plus a raw RabbitMQ one-way hop;
 4. relay: a batch of events committed at once, published with confirms, against raw kombu
    publishing of the same messages without confirms; then the consumer projecting them, against
    raw kombu consume-and-ack of the same messages;
 5. memory: the RSS of every web and worker process after that load;
 6. scale: people added up to ``--scale-people`` (published, bulk), ``coproduction rebuild`` of the
    whole projection from the services' feeds (events/s), and the portfolio's p99 again.

The table is printed and written to docs/performance.md (``--no-write`` to leave it alone).
"""
from __future__ import annotations

import argparse
import json
import os
import platform as pyplatform
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from datetime import datetime, timezone
from pathlib import Path

import requests
from joserfc.jwk import ECKey

ROOT = Path(__file__).resolve().parent.parent
PG_URL = os.environ.get("BENCH_DATABASE_URL", "postgresql://root@127.0.0.1:5432/test")
AMQP_URL = os.environ.get("BENCH_BROKER_URL", "amqp://guest:guest@127.0.0.1:5672//")
SERVICES = ("plans", "budgets", "decisions", "groups")
QUEUES = ("gateway.portfolio", "gateway.portfolio.retry", "gateway.portfolio.dead", "bench.raw", "bench.hop")
ANALYSIS = "## Where the time goes"
UNSENT = "SELECT count(*) FROM outbox WHERE sent_at IS NULL"
PROJECTED = "SELECT count(*) FROM inbox WHERE consumer = 'gateway.portfolio'"
EXCHANGES = ("coproduction.events", "coproduction.dead", "bench.raw", "bench.hop")


def log(message: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {message}", flush=True)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def pct(values: list[float], p: float) -> float:
    """The p-th percentile (nearest rank) of values."""
    ordered = sorted(values)
    if not ordered:
        return float("nan")
    rank = max(1, min(len(ordered), int(round(p / 100 * len(ordered) + 0.5))))
    return ordered[rank - 1]


def wait_until(condition, timeout: float, what: str, interval: float = 0.1):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            value = condition()
        except Exception:
            value = None
        if value:
            return value
        time.sleep(interval)
    raise RuntimeError(f"timed out after {timeout:.0f}s waiting for {what}")


def ensure_wrk() -> str:
    path = shutil.which("wrk")
    if path:
        return path
    log("wrk is not installed: installing it from Debian's packages (apt-get install -y wrk)")
    for cmd in (["apt-get", "install", "-y", "-q", "wrk"], ["apt-get", "update", "-q"],
                ["apt-get", "install", "-y", "-q", "wrk"]):
        subprocess.run(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT)
        if shutil.which("wrk"):
            return shutil.which("wrk")
    raise SystemExit("wrk is needed for the read benchmarks: apt-get install -y wrk")


def _audit_signing_key() -> str:
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
    return Ed25519PrivateKey.generate().private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()).decode()


# -- the platform under test, as processes --------------------------------------------------------
class Bench:
    def __init__(self, args):
        self.args = args
        self.tag = "bench" + uuid.uuid4().hex[:8]
        self.var = Path(tempfile.mkdtemp(prefix=self.tag + "-"))
        self.ports = {name: free_port() for name in ("gateway", *SERVICES, "baseline")}
        self.env = dict(os.environ)
        self.env.update({
            "DATABASE_URL": PG_URL, "DB_SCHEMA_PREFIX": self.tag + "_",
            "BROKER_URL": AMQP_URL, "BUS_PREFIX": self.tag + ".",
            "VAR_DIR": str(self.var), "SERVICE_TOKEN_SECRET": "bench-" + uuid.uuid4().hex * 2,
            "SESSION_SECRET": "bench-session-" + uuid.uuid4().hex * 2,
            "AUDIT_SIGNING_KEY": _audit_signing_key(),
            # the bench's clients use static tokens, as the history of its figures did
            "OAUTH_SIGNING_KEY": ECKey.generate_key("P-256").as_pem(private=True).decode(),
            "ALLOW_STATIC_TOKENS": "1",
            "RATE_LIMIT": "100000000 per minute", "WEB_WORKERS": str(args.workers),
            "BASELINE_DATABASE_URL": PG_URL, "BASELINE_SCHEMA": self.tag + "_baseline",
            "PYTHONUNBUFFERED": "1",
        })
        for name in ("gateway", *SERVICES):
            self.env[f"{name.upper()}_URL"] = f"http://127.0.0.1:{self.ports[name]}"
        os.environ.update({k: v for k, v in self.env.items() if k not in os.environ or k in (
            "DATABASE_URL", "DB_SCHEMA_PREFIX", "BROKER_URL", "BUS_PREFIX", "VAR_DIR", "SERVICE_TOKEN_SECRET",
            "SESSION_SECRET", "AUDIT_SIGNING_KEY", "OAUTH_SIGNING_KEY", "ALLOW_STATIC_TOKENS", "RATE_LIMIT",
            *[f"{n.upper()}_URL" for n in ("gateway", *SERVICES)])})
        self.procs: dict[str, subprocess.Popen] = {}
        self.gateway = f"http://127.0.0.1:{self.ports['gateway']}"
        self.baseline = f"http://127.0.0.1:{self.ports['baseline']}"
        self.tokens: dict[str, str] = {}
        self.results: dict = {"notes": []}
        self.people: list[str] = []
        self.services = [s for s in SERVICES if (ROOT / "services" / s / "app.py").exists()]
        self.started = time.monotonic()
        self.extra_people = 0

    # processes ----------------------------------------------------------------------------------
    def spawn(self, label: str, argv: list[str], port: int | None = None) -> subprocess.Popen:
        env = dict(self.env)
        if port:
            env["PORT"] = str(port)
        out = open(self.var / f"{label}.log", "ab")
        proc = subprocess.Popen(argv, env=env, cwd=ROOT, stdout=out, stderr=subprocess.STDOUT,
                                start_new_session=True)
        self.procs[label] = proc
        return proc

    def cli(self, label: str, *argv: str, port: int | None = None) -> subprocess.Popen:
        return self.spawn(label, [sys.executable, "-m", "coproduction.cli", *argv], port)

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
        proc = subprocess.Popen([sys.executable, "-m", "coproduction.cli", *argv], env=self.env, cwd=ROOT,
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

    # databases ----------------------------------------------------------------------------------
    def pg(self, schema: str):
        import psycopg
        return psycopg.connect(PG_URL, autocommit=True, options=f"-csearch_path={self.tag}_{schema}")

    def scalar(self, schema: str, sql: str, params=()):
        with self.pg(schema) as conn:
            return conn.execute(sql, params).fetchone()[0]

    def outbox_total(self) -> int:
        return sum(self.scalar(s, "SELECT count(*) FROM outbox") for s in self.services)

    def projected(self) -> int:
        return self.scalar("gateway", PROJECTED)

    # start and stop -----------------------------------------------------------------------------
    def start_platform(self) -> None:
        from coproduction.web import migrate
        from gateway import clients
        from gateway.app import database
        from coproduction.config import Settings
        for name in ("gateway", *self.services):
            migrate(name)
        db = database(Settings.from_env("gateway"))
        for role in ("hospital", "gp", "admin"):
            _id, self.tokens[role] = clients.create(db, f"bench {role}", "BENCH1", role)
        db.dispose()
        from bench.baseline_app import create_schema
        create_schema(PG_URL, self.env["BASELINE_SCHEMA"])

        for name in self.services:
            self.cli(f"{name}-web", "serve", name, port=self.ports[name])
            self.cli(f"{name}-relay", "relay", name)
        self.cli("gateway-web", "serve", "gateway", port=self.ports["gateway"])
        self.cli("gateway-consumer", "consume")
        if self.has_subcommand("deliver"):
            self.cli("gateway-deliver", "deliver")
        self.spawn("baseline-web", [sys.executable, "-m", "bench.baseline_app", "--port",
                                    str(self.ports["baseline"]), "--workers", str(self.args.workers)])
        for name, url in [("gateway", self.gateway), ("baseline", self.baseline),
                          *[(s, f"http://127.0.0.1:{self.ports[s]}") for s in self.services]]:
            wait_until(lambda: requests.get(url + "/healthz", timeout=2).ok, 60, f"{name} web")
        self.check_alive()
        log(f"platform up: gateway :{self.ports['gateway']}, {', '.join(self.services)}, relays, consumer; "
            f"baseline :{self.ports['baseline']} ({self.args.workers} sync workers each)")

    def has_subcommand(self, name: str) -> bool:
        from coproduction import cli
        return f'"{name}"' in Path(cli.__file__).read_text()

    def cleanup(self) -> None:
        for label in list(self.procs):
            self.stop(label, timeout=10)
        try:
            import psycopg
            with psycopg.connect(PG_URL, autocommit=True) as conn:
                schemas = [r[0] for r in conn.execute(
                    "SELECT nspname FROM pg_namespace WHERE nspname LIKE %s", (self.tag + "\\_%",))]
                for schema in schemas:
                    conn.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')
        except Exception as exc:
            log(f"cleanup: could not drop the bench schemas: {exc}")
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
        shutil.rmtree(self.var, ignore_errors=True)

    # 1. seed -------------------------------------------------------------------------------------
    def seed_detailed(self) -> None:
        n = self.args.people
        log(f"1. seeding {n} people, each with a plan, budget, decision and course "
            "through the services' own handlers; relays and the consumer project them")
        started = time.monotonic()
        self.run_cli("seed", "--people", str(n), "--detailed", str(n), "--jobs", str(self.args.jobs))
        seeded = time.monotonic() - started
        total = self.outbox_total()
        wait_until(lambda: self.projected() >= total, 600, f"the consumer to project {total} events", 0.5)
        self.check_alive()
        self.people = __import__("coproduction.seed", fromlist=["nhs_numbers"]).nhs_numbers(n)
        self.results["seed_detailed"] = {"people": n, "events": total, "seconds": round(seeded, 1),
                                         "projected_after": round(time.monotonic() - started, 1)}
        log(f"   {n} people, {total} events, seeded in {seeded:.0f}s, projected after "
            f"{time.monotonic() - started:.0f}s")

    # 2. reads ------------------------------------------------------------------------------------
    def wrk(self, base: str, paths: Path, token: str | None, seconds: float) -> dict:
        env = dict(os.environ, BENCH_TOKEN=token or "")
        cmd = [self.wrk_path, "-t", str(self.args.wrk_threads), "-c", str(self.args.connections),
               "-d", f"{seconds}s", "--timeout", "10s", "-s", str(ROOT / "bench" / "wrk_paths.lua"),
               base, "--", str(paths)]
        out = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=seconds + 60)
        line = [l for l in out.stdout.splitlines() if l.startswith("{")]
        if not line:
            raise RuntimeError(f"wrk printed no figures: {out.stdout[-500:]} {out.stderr[-500:]}")
        r = json.loads(line[-1])
        r["rate"] = r["requests"] / (r["duration_us"] / 1e6)
        r["errors"] = sum(r[k] for k in r if k.startswith("errors_"))
        return r

    def prepare_reads(self) -> None:
        http = requests.Session()
        hospital = {"Authorization": f"Bearer {self.tokens['hospital']}"}
        docs, sizes, admission_sizes = [], [], []
        r = http.get(f"{self.gateway}/v1/people/{self.people[0]}/admission-summary", headers=hospital)
        self.has_admission = r.status_code == 200
        if not self.has_admission:
            self.results["notes"].append(f"admission summary: GET answered {r.status_code}: not built")
        for nhs in self.people:
            r = http.get(f"{self.gateway}/v1/people/{nhs}/portfolio", headers=hospital)
            r.raise_for_status()
            docs.append((nhs, r.content))
            sizes.append(len(r.content))
            if self.has_admission and len(admission_sizes) < 100:
                admission_sizes.append(len(http.get(
                    f"{self.gateway}/v1/people/{nhs}/admission-summary", headers=hospital).content))
        import psycopg
        with psycopg.connect(PG_URL, autocommit=True) as conn:
            with conn.cursor() as cur:
                cur.executemany(f'INSERT INTO "{self.env["BASELINE_SCHEMA"]}".docs (key, document) '
                                'VALUES (%s, %s::jsonb)', [(nhs, body.decode()) for nhs, body in docs])
            conn.execute(f'ANALYZE "{self.env["BASELINE_SCHEMA"]}".docs')
        # the baseline answers with the same document, re-encoded by Flask like the gateway's
        check = http.get(f"{self.baseline}/docs/{self.people[0]}")
        self.results["doc_bytes"] = {"portfolio_mean": round(statistics.mean(sizes)),
                                     "baseline_mean_sample": len(check.content),
                                     "portfolio_sample": sizes[0],
                                     "admission_mean": round(statistics.mean(admission_sizes)) if admission_sizes else None}
        self.paths = {}
        for name, template in (("baseline", "/docs/{}"), ("portfolio", "/v1/people/{}/portfolio"),
                               ("admission", "/v1/people/{}/admission-summary")):
            path = self.var / f"paths-{name}.txt"
            path.write_text("\n".join(template.format(n) for n in self.people) + "\n")
            self.paths[name] = path

    def read_round(self, targets: list[str], seconds: float, warmup: float) -> dict:
        out = {}
        for target in targets:
            base, token = (self.baseline, None) if target == "baseline" else (self.gateway, self.tokens["hospital"])
            if warmup:
                self.wrk(base, self.paths[target], token, warmup)
            out[target] = self.wrk(base, self.paths[target], token, seconds)
            r = out[target]
            log(f"   {target:<10} {r['rate']:8,.0f} req/s  p50 {r['p50_us'] / 1000:6.2f} ms  "
                f"p99 {r['p99_us'] / 1000:6.2f} ms  errors {r['errors']}")
        return out

    def reads(self) -> None:
        log(f"2. reads at {self.args.connections} connections (wrk), {self.args.rounds} interleaved rounds of "
            f"{self.args.seconds}s each")
        self.prepare_reads()
        targets = ["baseline", "portfolio"] + (["admission"] if self.has_admission else [])
        rounds = []
        for i in range(self.args.rounds):
            log(f"  round {i + 1}")
            rounds.append(self.read_round(targets, self.args.seconds, self.args.warmup))
        best = {t: max((r[t] for r in rounds), key=lambda x: x["rate"]) for t in targets}
        self.results["reads"] = {"best": best, "rounds": rounds}
        self.check_alive()

    # 3. write -> visible -------------------------------------------------------------------------
    def write_visible(self) -> None:
        from coproduction.seed import nhs_numbers
        n = self.args.writes
        log(f"3. write → visible: {n} plans POSTed through the gateway, each polled in the portfolio until shown")
        numbers = nhs_numbers(n, start=len(self.people))
        self.extra_people = n
        http = requests.Session()
        gp = {"Authorization": f"Bearer {self.tokens['gp']}"}
        hospital = {"Authorization": f"Bearer {self.tokens['hospital']}"}
        visible, posts, polls = [], [], []
        for nhs in numbers:
            body = plan_body(nhs)
            t0 = time.perf_counter()
            r = http.post(f"{self.gateway}/v1/plans", json=body, headers=gp)
            t_post = time.perf_counter()
            if r.status_code != 201:
                raise RuntimeError(f"POST /v1/plans answered {r.status_code}: {r.text[:300]}")
            plan_id = r.json()["id"]
            count = 0
            while True:
                g = http.get(f"{self.gateway}/v1/people/{nhs}/portfolio", headers=hospital)
                count += 1
                if g.status_code == 200 and (g.json().get("plan") or {}).get("id") == plan_id:
                    break
                if time.perf_counter() - t0 > 30:
                    raise RuntimeError(f"plan {plan_id} not visible in the portfolio after 30s")
            t1 = time.perf_counter()
            visible.append((t1 - t0) * 1000)
            posts.append((t_post - t0) * 1000)
            polls.append(count)

        # baseline: a bare POST round trip, and a raw RabbitMQ one-way hop
        bare = []
        for nhs in numbers:
            t0 = time.perf_counter()
            r = http.post(f"{self.baseline}/items", json=plan_body(nhs))
            bare.append((time.perf_counter() - t0) * 1000)
            assert r.status_code == 201, r.text
        hops = rabbit_hops(self.tag + ".", n)
        self.results["write_visible"] = {
            "n": n, "p50": pct(visible, 50), "p99": pct(visible, 99), "max": max(visible),
            "post_p50": pct(posts, 50), "post_p99": pct(posts, 99), "polls_mean": statistics.mean(polls),
            "bare_post_p50": pct(bare, 50), "bare_post_p99": pct(bare, 99),
            "hop_p50": pct(hops, 50), "hop_p99": pct(hops, 99)}
        w = self.results["write_visible"]
        log(f"   visible p50 {w['p50']:.1f} ms  p99 {w['p99']:.1f} ms (the POST alone p50 {w['post_p50']:.1f}); "
            f"baseline POST p50 {w['bare_post_p50']:.2f} + hop p50 {w['hop_p50']:.2f} ms")
        self.check_alive()

    # 4. relay and consumer -----------------------------------------------------------------------
    def relay_and_consumer(self) -> None:
        n = self.args.events
        start = len(self.people) + self.extra_people
        log(f"4. relay and consumer: {n} plan.created events committed in one transaction while the "
            "consumer is stopped")
        self.stop("gateway-consumer")
        before_projected = self.projected()
        seed = subprocess.Popen([sys.executable, "-m", "coproduction.cli", "seed", "--people", str(n),
                                 "--detailed", "0", "--start", str(start), "--batch", str(n),
                                 "--service", "plans"], env=self.env, cwd=ROOT,
                                stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        t0 = None
        deadline = time.monotonic() + 600
        with self.pg("plans") as watch:  # one connection: a new one per poll would load the machine
            while time.monotonic() < deadline:
                b = watch.execute(UNSENT).fetchone()[0]
                if t0 is None and b > 0:
                    t0 = time.perf_counter()
                if t0 is not None and b == 0:
                    break
                time.sleep(0.005)
        t1 = time.perf_counter()
        seed.communicate(timeout=60)
        if t0 is None or seed.returncode != 0:
            raise RuntimeError("the relay measurement saw no backlog (did the seed fail?)")
        relay_rate = n / (t1 - t0)
        log(f"   relay (plans, confirms, PostgreSQL outbox): {n} in {t1 - t0:.2f}s = {relay_rate:,.0f}/s")

        # the same messages, published raw by kombu without confirms
        with self.pg("plans") as conn:
            messages = conn.execute("SELECT event_id, type, body FROM outbox ORDER BY id DESC LIMIT %s",
                                    (n,)).fetchall()
        raw_publish = kombu_publish(self.tag + ".", messages)
        log(f"   raw kombu publish, no confirms: {raw_publish:,.0f}/s")

        # the consumer, started again, projects what waits in its queue
        self.cli("gateway-consumer", "consume")
        target = before_projected + n
        t0 = None
        c0 = before_projected
        deadline = time.monotonic() + 900
        with self.pg("gateway") as watch:
            while time.monotonic() < deadline:
                c = watch.execute(PROJECTED).fetchone()[0]
                if t0 is None and c > before_projected:
                    t0, c0 = time.perf_counter(), c
                if c >= target:
                    break
                time.sleep(0.02)
            else:
                raise RuntimeError("the consumer did not project the batch in 15 minutes")
        t1 = time.perf_counter()
        consume_rate = (target - c0) / max(t1 - t0, 1e-6)
        log(f"   gateway consumer: {target - c0} projected in {t1 - t0:.2f}s = {consume_rate:,.0f}/s")
        from gateway.consumer import PREFETCH
        raw_consume = kombu_consume(self.tag + ".", n, prefetch=PREFETCH)
        log(f"   raw kombu consume-and-ack: {raw_consume:,.0f}/s")
        self.results["relay"] = {"n": n, "rate": relay_rate, "baseline": raw_publish}
        self.results["consumer"] = {"n": n, "rate": consume_rate, "baseline": raw_consume}
        self.check_alive()

    # 5. memory -----------------------------------------------------------------------------------
    def memory(self) -> None:
        rows = []
        for label, proc in self.procs.items():
            if proc.poll() is not None:
                continue
            for pid, role in [(proc.pid, "master" if label.endswith("-web") else "")] + [
                    (c, "worker") for c in children(proc.pid)]:
                rss = rss_mb(pid)
                if rss is not None:
                    rows.append({"process": label + (f" {role}" if role else ""), "pid": pid, "rss_mb": rss})
        self.results["memory"] = rows
        worst = max(rows, key=lambda r: r["rss_mb"])
        log(f"5. memory after the load: {len(rows)} processes, largest {worst['process']} {worst['rss_mb']:.0f} MB")

    # 6. scale and rebuild ------------------------------------------------------------------------
    def rebuild(self) -> dict | None:
        """`coproduction rebuild` over every event in every service's feed: events/s."""
        if not self.has_subcommand("rebuild"):
            return None
        events = self.outbox_total()
        started = time.monotonic()
        out = self.run_cli("rebuild")
        seconds = time.monotonic() - started
        return {"events": events, "seconds": seconds, "rate": events / seconds, "output": out.strip()[-300:]}

    def scale(self) -> None:
        """Add people up to --scale-people, as many as the time budget allows, then rebuild and read."""
        have = len(self.people) + self.extra_people + self.args.events
        log("6. rebuild and scale: a first `coproduction rebuild` of the projection as it is, to know its pace")
        pilot = self.rebuild()
        if pilot is None:
            self.results["notes"].append("rebuild: `coproduction rebuild` does not exist yet: not measured")
            rebuild_rate = None
        else:
            rebuild_rate = pilot["rate"]
            self.results["rebuild_pilot"] = pilot
            log(f"   rebuild of {pilot['events']:,} events: {pilot['seconds']:.1f}s = {rebuild_rate:,.0f}/s")
        reads_reserve = max(1, self.args.rounds - 1) * 2 * (self.args.seconds + self.args.warmup) + 60
        budget_end = self.started + self.args.budget_minutes * 60 - reads_reserve
        chunk, seeded, seed_seconds = 100_000, 0, 0.0
        log(f"   adding people (bulk, published) towards {self.args.scale_people:,} within the "
            f"{self.args.budget_minutes:g}-minute budget")
        while have < self.args.scale_people:
            n = min(chunk, self.args.scale_people - have)
            if seeded and rebuild_rate:  # will seeding n more and rebuilding everything still fit?
                seed_rate = seeded / seed_seconds
                needed = n / seed_rate + (self.outbox_total() + n) / (0.8 * rebuild_rate)
                if time.monotonic() + needed > budget_end:
                    break
            started = time.monotonic()
            self.run_cli("seed", "--people", str(n), "--detailed", "0", "--start", str(have), "--published",
                         "--jobs", str(self.args.jobs), "--service", "plans", "--batch", "2000")
            seed_seconds += time.monotonic() - started
            seeded += n
            have += n
        if seeded:
            self.results["seed_bulk"] = {"people": seeded, "seconds": seed_seconds, "rate": seeded / seed_seconds}
            log(f"   seeded {seeded:,} people in {seed_seconds:.0f}s ({seeded / seed_seconds:,.0f}/s)")
        if have < self.args.scale_people:
            self.results["notes"].append(
                f"scale: stopped at {have:,} people (not {self.args.scale_people:,}) to keep the run within "
                f"{self.args.budget_minutes:g} minutes: at the rebuild's pace more would not have fitted")
        rebuild = self.rebuild() if rebuild_rate else None
        self.results["rebuild"] = rebuild
        if rebuild:
            log(f"   rebuild: {rebuild['events']:,} events in {rebuild['seconds']:.0f}s = {rebuild['rate']:,.0f}/s")
        people = self.scalar("gateway", "SELECT count(*) FROM portfolios")
        self.results["scale_people"] = people
        # the load left autovacuum and a checkpoint to do: let them finish first, so the reads below
        # measure the projection at rest at its new size, not PostgreSQL tidying up after a bulk load
        started = time.monotonic()
        with self.pg("gateway") as conn:
            conn.execute("VACUUM (ANALYZE) portfolios, aggregates, change_log, inbox, audit_log, clients")
            conn.execute("CHECKPOINT")
        log(f"   portfolios in the projection: {people:,}; VACUUM ANALYZE and CHECKPOINT "
            f"({time.monotonic() - started:.0f}s); reads again")
        rounds = [self.read_round(["baseline", "portfolio"], self.args.seconds, self.args.warmup)
                  for _ in range(max(1, self.args.rounds - 1))]
        self.results["scale_reads"] = {t: max((r[t] for r in rounds), key=lambda x: x["rate"])
                                       for t in ("baseline", "portfolio")}
        self.check_alive()


def plan_body(nhs: str) -> dict:
    return {"nhs_number": nhs, "conditions": ["type 2 diabetes"],
            "priorities": [{"text": "Walk my grandson to school", "category": "physical_activity",
                            "expressed_by": "person", "rank": 1, "status": "active"}],
            "goals": [], "actions": [{"text": "Walk 15 minutes after lunch", "owner": "person"}],
            "next_review_date": "2027-03-14"}


# -- raw RabbitMQ baselines -----------------------------------------------------------------------
def _raw_topology(prefix: str, name: str):
    import kombu
    exchange = kombu.Exchange(prefix + name, type="topic", durable=True)
    queue = kombu.Queue(prefix + name, exchange=exchange, routing_key="#", durable=True)
    return exchange, queue


def kombu_publish(prefix: str, messages) -> float:
    """Raw kombu publishing of the same bodies and keys, persistent, without confirms: messages/s."""
    import kombu
    from coproduction.events import CONTENT_TYPE
    exchange, queue = _raw_topology(prefix, "bench.raw")
    with kombu.Connection(AMQP_URL) as conn:
        queue(conn.default_channel).declare()
        queue(conn.default_channel).purge()
        producer = conn.Producer()
        bodies = [(m[0], m[1], m[2].encode()) for m in messages]
        t0 = time.perf_counter()
        for event_id, type_, body in bodies:
            producer.publish(body, exchange=exchange, routing_key=type_, content_type=CONTENT_TYPE,
                             content_encoding="utf-8", message_id=event_id, delivery_mode=2, retry=False)
        elapsed = time.perf_counter() - t0
        # the broker has them all before the consume baseline starts
        wait_until(lambda: queue(conn.default_channel).queue_declare(passive=True).message_count >= len(bodies),
                   60, "the raw queue to hold every message", 0.05)
    return len(bodies) / elapsed


def kombu_consume(prefix: str, n: int, prefetch: int) -> float:
    """Raw kombu consume-and-ack (give it the gateway consumer's prefetch): messages/s."""
    import kombu
    _exchange, queue = _raw_topology(prefix, "bench.raw")
    got = {"n": 0, "t0": None}

    def on_message(body, message):
        if got["t0"] is None:
            got["t0"] = time.perf_counter()
        message.ack()
        got["n"] += 1

    with kombu.Connection(AMQP_URL) as conn:
        with kombu.Consumer(conn, queues=[queue], callbacks=[on_message], prefetch_count=prefetch, no_ack=False):
            deadline = time.monotonic() + 300
            while got["n"] < n and time.monotonic() < deadline:
                try:
                    conn.drain_events(timeout=1)
                except socket.timeout:
                    pass
    t1 = time.perf_counter()
    return (got["n"] - 1) / max(t1 - got["t0"], 1e-6)


def rabbit_hops(prefix: str, n: int) -> list[float]:
    """One-way latency of single persistent messages through RabbitMQ, in milliseconds."""
    import kombu
    exchange, queue = _raw_topology(prefix, "bench.hop")
    received = threading.Event()
    ready = threading.Event()
    latencies: list[float] = []
    stop = threading.Event()

    def consume():
        def on_message(body, message):
            latencies.append((time.perf_counter() - float(message.headers["sent"])) * 1000)
            message.ack()
            received.set()
        with kombu.Connection(AMQP_URL) as conn:
            queue(conn.default_channel).declare()
            with kombu.Consumer(conn, queues=[queue], callbacks=[on_message], prefetch_count=10):
                ready.set()
                while not stop.is_set():
                    try:
                        conn.drain_events(timeout=0.2)
                    except socket.timeout:
                        pass

    t = threading.Thread(target=consume, daemon=True)
    t.start()
    ready.wait(10)
    with kombu.Connection(AMQP_URL) as conn:
        producer = conn.Producer()
        for i in range(n + 5):
            received.clear()
            producer.publish(b'{"n": %d}' % i, exchange=exchange, routing_key="hop", delivery_mode=2,
                             headers={"sent": repr(time.perf_counter())}, retry=False)
            if not received.wait(10):
                raise RuntimeError("a raw RabbitMQ message did not arrive in 10s")
    stop.set()
    t.join(5)
    return latencies[5:]  # the first few warm the connection up


# -- processes' memory ------------------------------------------------------------------------------
def children(pid: int) -> list[int]:
    out = subprocess.run(["ps", "-o", "pid=", "--ppid", str(pid)], capture_output=True, text=True)
    return [int(x) for x in out.stdout.split()]


def rss_mb(pid: int) -> float | None:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    except OSError:
        return None
    return None


# -- the report -------------------------------------------------------------------------------------
def machine() -> dict:
    cpu = "unknown"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    mem = 0
    try:
        mem = int(Path("/proc/meminfo").read_text().split()[1]) // 1024 // 1024
    except (OSError, ValueError, IndexError):
        pass

    def version(cmd):
        try:
            return subprocess.run(cmd, capture_output=True, text=True, timeout=30).stdout.strip().splitlines()[-1]
        except Exception:
            return "unknown"
    try:
        import psycopg
        with psycopg.connect(PG_URL) as c:
            pg = c.execute("SHOW server_version").fetchone()[0]
    except Exception:
        pg = "unknown"
    return {"cpu": cpu, "cores": os.cpu_count(), "memory_gb": mem, "python": pyplatform.python_version(),
            "postgresql": pg, "kernel": pyplatform.release(), "wrk": _wrk_version()}


def _wrk_version() -> str:
    try:
        out = subprocess.run(["wrk", "-v"], capture_output=True, text=True, timeout=10)
        return " ".join((out.stdout or out.stderr).split()[:2]) or "wrk"
    except Exception:
        return "wrk (version unknown)"


def _ms(us: float) -> str:
    return f"{us / 1000:.2f} ms"


def _ok(flag: bool | None) -> str:
    return "n/a" if flag is None else ("met" if flag else "**missed**")


def table(results: dict) -> list[tuple]:
    rows = []
    reads = results.get("reads", {}).get("best", {})
    base = reads.get("baseline")
    if base and "portfolio" in reads:
        p = reads["portfolio"]
        ratio, p99 = p["rate"] / base["rate"], p["p99_us"] / base["p99_us"]
        rows.append(("portfolio reads/s at 16 connections",
                     f"{p['rate']:,.0f}/s, p99 {_ms(p['p99_us'])}",
                     f"bare Flask + one indexed row: {base['rate']:,.0f}/s, p99 {_ms(base['p99_us'])}",
                     f"ratio {ratio:.2f} (≥ 0.8); p99 {p99:.1f}× (≤ 2×)", _ok(ratio >= 0.8 and p99 <= 2)))
    if base and "admission" in reads:
        a = reads["admission"]
        ratio = a["rate"] / base["rate"]
        rows.append(("admission summary reads/s", f"{a['rate']:,.0f}/s, p99 {_ms(a['p99_us'])}",
                     f"the same bare endpoint: {base['rate']:,.0f}/s", f"ratio {ratio:.2f} (≥ 0.7)", _ok(ratio >= 0.7)))
    elif base:
        rows.append(("admission summary reads/s", "not built", "", "ratio ≥ 0.7", "n/a"))
    w = results.get("write_visible")
    if w:
        rows.append(("write → visible in the portfolio", f"p50 {w['p50']:.1f} ms, p99 {w['p99']:.1f} ms",
                     f"bare POST p50 {w['bare_post_p50']:.2f} / p99 {w['bare_post_p99']:.2f} ms + RabbitMQ hop "
                     f"p50 {w['hop_p50']:.2f} / p99 {w['hop_p99']:.2f} ms = p50 "
                     f"{w['bare_post_p50'] + w['hop_p50']:.2f} / p99 {w['bare_post_p99'] + w['hop_p99']:.2f} ms",
                     "p50 ≤ 15 ms, p99 ≤ 50 ms", _ok(w["p50"] <= 15 and w["p99"] <= 50)))
    r = results.get("relay")
    if r:
        ratio = r["rate"] / r["baseline"]
        rows.append(("relay: outbox events published/s (confirms, PostgreSQL outbox)", f"{r['rate']:,.0f}/s",
                     f"raw kombu publish, no confirms: {r['baseline']:,.0f}/s", f"ratio {ratio:.2f} (≥ 0.5)",
                     _ok(ratio >= 0.5)))
    c = results.get("consumer")
    if c:
        ratio = c["rate"] / c["baseline"]
        rows.append(("gateway consumer: events projected/s", f"{c['rate']:,.0f}/s",
                     f"raw kombu consume-and-ack: {c['baseline']:,.0f}/s", f"ratio {ratio:.2f} (≥ 0.35)",
                     _ok(ratio >= 0.35)))
    if "rebuild" in results:
        rb = results["rebuild"]
        if rb:
            pilot = results.get("rebuild_pilot")
            rows.append(("rebuild of the projection from the services' feeds",
                         f"{rb['events']:,} events in {rb['seconds']:.0f} s = {rb['rate']:,.0f}/s"
                         + (f" (at {pilot['events']:,} events: {pilot['rate']:,.0f}/s)" if pilot else ""),
                         "events/s", "1,000,000 events in ≤ 300 s (≥ 3,333/s)", _ok(rb["rate"] >= 1_000_000 / 300)))
        else:
            rows.append(("rebuild of the projection", "not built", "", "1,000,000 events in ≤ 5 min", "n/a"))
    s = results.get("scale_reads")
    if s and base and "portfolio" in reads:
        big, small = s["portfolio"], reads["portfolio"]
        ratio = big["p99_us"] / small["p99_us"]
        rows.append((f"scale: portfolio p99, {results['people']:,} vs {results['scale_people']:,} people",
                     f"p99 {_ms(small['p99_us'])} → {_ms(big['p99_us'])} ({big['rate']:,.0f}/s)",
                     f"bare endpoint p99 in the same two moments: {_ms(base['p99_us'])} → {_ms(s['baseline']['p99_us'])}",
                     f"{ratio:.2f}× (≤ 1.2×)", _ok(ratio <= 1.2) if results["scale_people"] >= 1_000_000
                     else f"{_ok(ratio <= 1.2)} at {results['scale_people']:,} people; **1,000,000 not reached**"))
    sb = results.get("seed_bulk")
    if sb:
        rows.append(("seed: people written in bulk (`coproduction seed`, plans, one event each)",
                     f"{sb['people']:,} in {sb['seconds']:.0f} s = {sb['rate']:,.0f}/s", "",
                     "a million events in minutes", _ok(sb["rate"] * 60 * 10 >= 1_000_000)))
    m = results.get("memory")
    if m:
        worst = max(m, key=lambda x: x["rss_mb"])
        rows.append(("memory: RSS of each web and worker process after the load",
                     f"largest {worst['rss_mb']:.0f} MB ({worst['process']}), {len(m)} processes", "",
                     "≤ 150 MB each", _ok(all(x["rss_mb"] <= 150 for x in m))))
    return rows


def markdown(results: dict, info: dict) -> str:
    lines = [
        "# Performance",
        "",
        "Every figure is measured by `make bench` next to its raw baseline, in the same run, on the same",
        "machine and the same server settings (gunicorn sync workers, PostgreSQL on 127.0.0.1, RabbitMQ on",
        "127.0.0.1). On a shared 2-core machine absolute times are noise; the ratios are the figures.",
        "",
        f"**Last run:** {info['date']} · {info['machine']['cpu']}, {info['machine']['cores']} cores, "
        f"{info['machine']['memory_gb']} GB · PostgreSQL {info['machine']['postgresql']} · Python "
        f"{info['machine']['python']} · {info['machine']['wrk']} · load average before/after "
        f"{info['load_before']} / {info['load_after']} · whole run {info['minutes']:.1f} min",
        "",
        "| figure | measured | baseline in the same run | target | |",
        "|---|---|---|---|---|",
    ]
    for row in table(results):
        lines.append("| " + " | ".join(row) + " |")
    lines += ["", "Settings: " + info["settings"], ""]
    for note in results.get("notes", []):
        lines.append(f"- {note}")
    mem = results.get("memory")
    if mem:
        lines += ["", "<details><summary>RSS of every process after the load</summary>", "",
                  "| process | RSS (MB) |", "|---|---|"]
        lines += [f"| {m['process']} | {m['rss_mb']:.0f} |" for m in sorted(mem, key=lambda x: -x["rss_mb"])]
        lines += ["", "</details>"]
    lines += [
        "",
        "## How to reproduce",
        "",
        "```",
        "make bench                       # RabbitMQ and PostgreSQL running (make services starts them)",
        ".venv/bin/python -m bench.run --help   # sizes, rounds, durations; --quick for a short run",
        "```",
        "",
        "The bench installs `wrk` from Debian's packages if it is missing, uses its own PostgreSQL schemas",
        "and RabbitMQ names (a fresh `bench<hex>` prefix) and removes them afterwards.",
        "",
        "How each figure is measured:",
        "",
        "- **Reads** (portfolio, admission summary): wrk with 16 connections over 2 threads, each request a",
        "  random one of the seeded people, with a hospital client's token. The baseline is",
        "  `bench/baseline_app.py`: a bare Flask app under the same gunicorn settings that reads one",
        "  indexed jsonb row holding a copy of the very portfolio document the gateway returned, and returns",
        "  it. Rounds are interleaved (baseline, portfolio, admission, again) and the best round of each",
        "  is kept, so a neighbour's burst on the shared machine does not decide a figure.",
        "- **Write → visible**: one plan at a time POSTed through the gateway (which routes it to the plans",
        "  service), then the portfolio polled until it shows that plan: the whole road (gateway, service,",
        "  outbox, relay with confirms, RabbitMQ, consumer, projection, read). Baseline: a bare POST that",
        "  inserts and commits one row, plus one persistent message's one-way trip through RabbitMQ.",
        "- **Relay**: a batch of plan events committed in one transaction (the relay process running, woken",
        "  by NOTIFY); the time from the rows becoming visible to the outbox having none unsent. Baseline:",
        "  the same bodies and routing keys published by kombu, persistent, without confirms.",
        "- **Consumer**: those events waiting in the gateway's queue while its consumer was stopped; the",
        "  consumer started and the time from its first projected event to its last. Baseline: kombu",
        "  consuming and acknowledging the same messages with the same prefetch.",
        "- **Rebuild**: `coproduction rebuild` over every event in every service's feed (1,000,000 people",
        "  with a plan each, written by `coproduction seed` in bulk, plus the detailed people).",
        "- **Scale**: the same reads of the same detailed people with the projection holding",
        "  1,000,000 people; compared with the first reads, when it held the detailed people only.",
        "- **Memory**: VmRSS of every gunicorn master and worker, relay, consumer and webhook dispatcher.",
        "",
        "Data: `coproduction seed --people N` (`coproduction seed --help`): detailed people through every service's",
        "own HTTP handlers, bulk people through the plans model and outbox in large transactions.",
        "",
    ]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="bench", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--people", type=int, default=1000, help="detailed people (every service)")
    parser.add_argument("--scale-people", type=int, default=1_000_000, help="people for the scale step")
    parser.add_argument("--events", type=int, default=10_000, help="events for the relay and consumer step")
    parser.add_argument("--writes", type=int, default=200, help="write → visible samples")
    parser.add_argument("--seconds", type=float, default=8, help="each wrk measurement")
    parser.add_argument("--warmup", type=float, default=2, help="wrk warm-up before each measurement")
    parser.add_argument("--rounds", type=int, default=2, help="interleaved read rounds")
    parser.add_argument("--connections", type=int, default=16)
    parser.add_argument("--wrk-threads", type=int, default=2)
    parser.add_argument("--workers", type=int, default=2, help="gunicorn sync workers per web process")
    parser.add_argument("--jobs", type=int, default=2, help="seed processes")
    parser.add_argument("--budget-minutes", type=float, default=15,
                        help="the scale step adds people only while the whole run fits in this")
    parser.add_argument("--skip-scale", action="store_true", help="leave out the scale and rebuild step")
    parser.add_argument("--quick", action="store_true",
                        help="a short run to try the bench: 200 people, 50,000 at scale, 1 round of 4 s")
    parser.add_argument("--no-write", action="store_true", help="do not write docs/performance.md")
    parser.add_argument("--json", type=Path, help="also write every figure to this file")
    args = parser.parse_args(argv)
    if args.quick:
        args.people, args.scale_people, args.events, args.writes = 200, 50_000, 3000, 50
        args.seconds, args.warmup, args.rounds = 4, 1, 1

    started = time.monotonic()
    load_before = " ".join(f"{x:.1f}" for x in os.getloadavg())
    bench = Bench(args)
    bench.wrk_path = ensure_wrk()
    log(f"bench {bench.tag}: schemas {bench.tag}_*, queues {bench.tag}.*, logs in {bench.var}")
    ok = False
    try:
        bench.start_platform()
        bench.seed_detailed()
        bench.reads()
        bench.write_visible()
        bench.relay_and_consumer()
        bench.memory()
        bench.results["people"] = args.people
        if not args.skip_scale:
            bench.scale()
        ok = True
    except Exception as exc:
        log(f"bench failed: {exc}")
        bench.results["notes"].append(f"the run stopped early: {exc}")
        import traceback
        traceback.print_exc()
    finally:
        bench.results["people"] = args.people
        bench.memory() if "memory" not in bench.results and bench.procs else None
        log("cleaning up")
        bench.cleanup()

    info = {"date": datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC"), "machine": machine(),
            "load_before": load_before, "load_after": " ".join(f"{x:.1f}" for x in os.getloadavg()),
            "minutes": (time.monotonic() - started) / 60,
            "settings": (f"{args.workers} gunicorn sync workers per web process; wrk {args.connections} "
                         f"connections, {args.wrk_threads} threads, {args.rounds} round(s) of {args.seconds:g} s "
                         f"after {args.warmup:g} s warm-up; {args.people:,} detailed people; "
                         f"{args.writes} writes; {args.events:,} relay/consumer events; "
                         f"{'no scale step' if args.skip_scale else f'{args.scale_people:,} people at scale'}")}
    rows = table(bench.results)
    width = max((len(r[0]) for r in rows), default=10)
    print("\n" + "=" * 100)
    for figure, measured, baseline, target, verdict in rows:
        print(f"{figure:<{width}}  {measured}\n{'':<{width}}  baseline: {baseline}\n{'':<{width}}  {target}: {verdict}")
    for note in bench.results["notes"]:
        print("note:", note)
    print("=" * 100)
    if args.json:
        args.json.write_text(json.dumps({"results": bench.results, "info": info}, indent=2, default=str))
    if not args.no_write and ok and not args.quick:
        doc = ROOT / "docs" / "performance.md"
        kept = ""  # the hand-written analysis below the generated part survives a new run
        if doc.exists() and ANALYSIS in doc.read_text():
            kept = "\n" + doc.read_text()[doc.read_text().index(ANALYSIS):]
        doc.write_text(markdown(bench.results, info) + kept)
        log("wrote docs/performance.md")
    elif not args.no_write:
        log("docs/performance.md left as it was (" + ("quick run" if args.quick else "the run stopped early") + ")")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
