"""Step 3: the audit log under two gateway processes (issue 18).

A second gateway web process starts beside the first; wrk reads portfolios from both at once (half
the connections each) while a sampler reads ``pg_locks`` every few milliseconds for the gateway's
web backends (named by ``PGAPPNAME``, as tests/test_audit_scale.py does): a sample counts when one
of them holds or waits on an advisory lock, or waits on any lock. Then, once the sequencer has
caught up, each record written during that load is timed from its writing to the signing of the
first tree head that covers its leaf.
"""
from __future__ import annotations

import bisect
import threading
import time
from datetime import datetime

import requests

from . import launcher
from .context import Context
from .load import Wrk
from .platform import PG_URL
from .timing import log, pct, wait_until

# as tests/test_audit_scale.py: advisory locks, and waits but on a relation's extension (PostgreSQL's
# brief lock while a table's file grows, shared by concurrent INSERTs into any table)
LOCKS = """SELECT count(*) FROM pg_locks l JOIN pg_stat_activity a ON a.pid = l.pid
           WHERE a.application_name = %s
             AND (l.locktype = 'advisory' OR (NOT l.granted AND l.locktype <> 'extend'))"""
SAMPLE_EVERY = 0.003  # seconds
SECOND = "gateway-web-2"


class LockSampler(threading.Thread):
    """Samples pg_locks until stopped: how many samples, and how many saw a web backend waiting."""

    def __init__(self, ctx: Context):
        super().__init__(daemon=True)
        self.conn = ctx.platform.pg("gateway")
        self.web_name = ctx.platform.web_name
        self.stopping = threading.Event()
        self.samples = self.waiting = 0

    def check_sees_locks(self, pg_url: str) -> None:
        """A lock held by a backend named like the web's must show in a sample, or the figure means nothing."""
        import psycopg
        with psycopg.connect(pg_url, autocommit=True, application_name=self.web_name) as control:
            control.execute("SELECT pg_advisory_lock(7240002)")  # what the old audit append took
            seen = self.conn.execute(LOCKS, (self.web_name,)).fetchone()[0]
            control.execute("SELECT pg_advisory_unlock(7240002)")  # gone before the sampling starts
        if not seen:
            raise RuntimeError("the pg_locks sampler did not see a web backend's advisory lock")

    def run(self) -> None:
        while not self.stopping.is_set():
            if self.conn.execute(LOCKS, (self.web_name,)).fetchone()[0]:
                self.waiting += 1
            self.samples += 1
            time.sleep(SAMPLE_EVERY)

    def stop(self) -> None:
        self.stopping.set()
        self.join(10)
        self.conn.close()


def read_to_signed_ms(ctx: Context, after_id: int) -> list[float]:
    """For each record after after_id: from its writing to the signing of the first head covering it."""
    with ctx.platform.pg("gateway") as conn:
        heads = conn.execute("SELECT tree_size, timestamp FROM audit_tree_heads ORDER BY tree_size").fetchall()
        rows = conn.execute("SELECT at, leaf_index FROM audit_log WHERE id > %s", (after_id,)).fetchall()
    sizes = [size for size, _signed in heads]
    out = []
    for at, leaf in rows:
        _size, signed_ms = heads[bisect.bisect_right(sizes, leaf)]
        written_ms = datetime.fromisoformat(at.replace("Z", "+00:00")).timestamp() * 1000
        out.append(signed_ms - written_ms)
    return out


def _both_loaded(ctx: Context, seconds: float) -> list[dict]:
    """wrk on each gateway process at once, half the connections each."""
    args, platform = ctx.args, ctx.platform
    half = Wrk(max(1, args.wrk_threads // 2), max(1, args.connections // 2))
    bases = [platform.gateway, f"http://127.0.0.1:{platform.ports['gateway-2']}"]
    figures: list[dict] = [{}, {}]

    def load(i: int) -> None:
        figures[i] = half.run(bases[i], ctx.read_paths["portfolio"], platform.tokens["hospital"], seconds)

    threads = [threading.Thread(target=load, args=(i,)) for i in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(seconds + 90)
    return figures


def _sequenced_all(ctx: Context) -> bool:
    with ctx.platform.pg("gateway") as conn:
        waiting = conn.execute("SELECT count(*) FROM audit_log WHERE leaf_index IS NULL").fetchone()[0]
    return waiting == 0


def measure(ctx: Context) -> None:
    platform, args = ctx.platform, ctx.args
    log(f"3. audit: portfolio reads over 2 gateway processes for {args.seconds:g}s, pg_locks sampled; "
        "read → inside a signed tree head")
    launcher.spawn_gateway_web(SECOND, "gateway-2", platform.spawn, platform.web_name)
    try:
        url = f"http://127.0.0.1:{platform.ports['gateway-2']}/healthz"
        wait_until(lambda: requests.get(url, timeout=2).ok, 60, "the second gateway web process")
        if args.warmup:
            _both_loaded(ctx, args.warmup)
        after_id = platform.scalar("gateway", "SELECT coalesce(max(id), 0) FROM audit_log")
        sampler = LockSampler(ctx)
        sampler.check_sees_locks(PG_URL)
        sampler.start()
        try:
            figures = _both_loaded(ctx, args.seconds)
        finally:
            sampler.stop()
        wait_until(lambda: _sequenced_all(ctx), 60, "the sequencer to sequence every record", 0.05)
        latencies = read_to_signed_ms(ctx, after_id)
    finally:
        platform.check_alive()
        platform.stop(SECOND)
    rate = sum(f["rate"] for f in figures)
    ctx.results["audit"] = {
        "processes": 2, "rate": rate, "errors": sum(f["errors"] for f in figures),
        "samples": sampler.samples, "waiting": sampler.waiting, "records": len(latencies),
        "signed_p50_ms": pct(latencies, 50), "signed_p99_ms": pct(latencies, 99),
        "signed_max_ms": max(latencies, default=float("nan"))}
    a = ctx.results["audit"]
    log(f"   {rate:,.0f} reads/s over 2 processes; {a['waiting']} of {a['samples']} pg_locks samples with a "
        f"request waiting; {a['records']} records, read → signed p50 {a['signed_p50_ms']:.0f} ms, "
        f"p99 {a['signed_p99_ms']:.0f} ms")
