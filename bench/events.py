"""Step 5, the relay and the consumer, each against raw kombu; and the rebuild of the projection."""
from __future__ import annotations

import subprocess
import time

from . import launcher
from .context import Context
from .platform import PROJECTED, ROOT
from .rabbit import kombu_consume, kombu_publish
from .timing import log

UNSENT = "SELECT count(*) FROM outbox WHERE sent_at IS NULL"


def _relay_rate(ctx: Context, n: int, start: int) -> float:
    """n plan events committed in one transaction: the relay's events/s from visible to all sent."""
    seed = subprocess.Popen(launcher.command("seed", "--people", str(n), "--detailed", "0", "--start", str(start),
                                             "--batch", str(n), "--service", "plans"),
                            env=ctx.platform.env, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            text=True)
    t0 = None
    deadline = time.monotonic() + 600
    with ctx.platform.pg("plans") as watch:  # one connection: a new one per poll would load the machine
        while time.monotonic() < deadline:
            unsent = watch.execute(UNSENT).fetchone()[0]
            if t0 is None and unsent > 0:
                t0 = time.perf_counter()
            if t0 is not None and unsent == 0:
                break
            time.sleep(0.005)
    t1 = time.perf_counter()
    seed.communicate(timeout=60)
    if t0 is None or seed.returncode != 0:
        raise RuntimeError("the relay measurement saw no backlog (did the seed fail?)")
    rate = n / (t1 - t0)
    log(f"   relay (plans, confirms, PostgreSQL outbox): {n} in {t1 - t0:.2f}s = {rate:,.0f}/s")
    return rate


def _consumer_rate(ctx: Context, before: int, n: int) -> float:
    """The consumer started with n events waiting: its events/s from the first projected to the last."""
    ctx.platform.spawn("gateway-consumer", launcher.command("consume"))
    target, t0, c0 = before + n, None, before
    deadline = time.monotonic() + 900
    with ctx.platform.pg("gateway") as watch:
        while time.monotonic() < deadline:
            c = watch.execute(PROJECTED).fetchone()[0]
            if t0 is None and c > before:
                t0, c0 = time.perf_counter(), c
            if c >= target:
                break
            time.sleep(0.02)
        else:
            raise RuntimeError("the consumer did not project the batch in 15 minutes")
    t1 = time.perf_counter()
    rate = (target - c0) / max(t1 - t0, 1e-6)
    log(f"   gateway consumer: {target - c0} projected in {t1 - t0:.2f}s = {rate:,.0f}/s")
    return rate


def relay_and_consumer(ctx: Context) -> None:
    n, platform = ctx.args.events, ctx.platform
    log(f"5. relay and consumer: {n} plan.created events committed in one transaction while the "
        "consumer is stopped")
    platform.stop("gateway-consumer")
    before = platform.projected()
    relay_rate = _relay_rate(ctx, n, start=len(ctx.people) + ctx.extra_people)
    with platform.pg("plans") as conn:  # the same messages, published raw by kombu without confirms
        messages = conn.execute("SELECT event_id, type, body FROM outbox ORDER BY id DESC LIMIT %s",
                                (n,)).fetchall()
    raw_publish = kombu_publish(platform.tag + ".", messages)
    log(f"   raw kombu publish, no confirms: {raw_publish:,.0f}/s")
    consume_rate = _consumer_rate(ctx, before, n)
    from gateway.consumer import PREFETCH
    raw_consume = kombu_consume(platform.tag + ".", n, prefetch=PREFETCH)
    log(f"   raw kombu consume-and-ack: {raw_consume:,.0f}/s")
    ctx.results["relay"] = {"n": n, "rate": relay_rate, "baseline": raw_publish}
    ctx.results["consumer"] = {"n": n, "rate": consume_rate, "baseline": raw_consume}
    platform.check_alive()


def rebuild(ctx: Context) -> dict:
    """`coproduction rebuild` over every event in every service's feed: events/s."""
    events = ctx.platform.outbox_total()
    started = time.monotonic()
    out = ctx.platform.run_cli("rebuild")
    seconds = time.monotonic() - started
    return {"events": events, "seconds": seconds, "rate": events / seconds, "output": out.strip()[-300:]}
