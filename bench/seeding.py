"""Step 1, and the people the scale step adds: data written by ``coproduction seed``."""
from __future__ import annotations

import time

from . import launcher
from .context import Context
from .timing import log, wait_until


def seed_detailed(ctx: Context) -> None:
    """The detailed people, through every service's handlers, waited for until all are projected."""
    n, platform = ctx.args.people, ctx.platform
    log(f"1. seeding {n} people, each with a plan, budget, decision and course "
        "through the services' own handlers; relays and the consumer project them")
    started = time.monotonic()
    platform.run_cli("seed", "--people", str(n), "--detailed", str(n), "--jobs", str(ctx.args.jobs))
    seeded = time.monotonic() - started
    total = platform.outbox_total()
    wait_until(lambda: platform.projected() >= total, 600, f"the consumer to project {total} events", 0.5)
    platform.check_alive()
    ctx.people = launcher.nhs_numbers(n)
    ctx.results["seed_detailed"] = {"people": n, "events": total, "seconds": round(seeded, 1),
                                    "projected_after": round(time.monotonic() - started, 1)}
    log(f"   {n} people, {total} events, seeded in {seeded:.0f}s, projected after "
        f"{time.monotonic() - started:.0f}s")


def seed_bulk(ctx: Context, count: int, start: int) -> float:
    """count people with a plan each, from number start on, written in bulk and published: seconds."""
    started = time.monotonic()
    ctx.platform.run_cli("seed", "--people", str(count), "--detailed", "0", "--start", str(start), "--published",
                         "--jobs", str(ctx.args.jobs), "--service", "plans", "--batch", "2000")
    return time.monotonic() - started
