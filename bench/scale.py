"""Step 7: people added up to ``--scale-people`` (bulk, published) as the time budget allows, a
rebuild of the whole projection from the services' feeds, and the portfolio's reads again.
"""
from __future__ import annotations

import time

from . import reads
from .context import Context
from .events import rebuild
from .seeding import seed_bulk
from .timing import log

CHUNK = 100_000  # people seeded at a time, the budget checked between chunks


def _add_people(ctx: Context, have: int, rebuild_rate: float) -> int:
    """Seed chunks while seeding the next and rebuilding everything still fits: people there are now."""
    args = ctx.args
    reads_reserve = max(1, args.rounds - 1) * 2 * (args.seconds + args.warmup) + 60
    budget_end = ctx.started + args.budget_minutes * 60 - reads_reserve
    seeded, seed_seconds = 0, 0.0
    log(f"   adding people (bulk, published) towards {args.scale_people:,} within the "
        f"{args.budget_minutes:g}-minute budget")
    while have < args.scale_people:
        n = min(CHUNK, args.scale_people - have)
        if seeded:
            needed = n / (seeded / seed_seconds) + (ctx.platform.outbox_total() + n) / (0.8 * rebuild_rate)
            if time.monotonic() + needed > budget_end:
                break
        seed_seconds += seed_bulk(ctx, n, start=have)
        seeded += n
        have += n
    if seeded:
        ctx.results["seed_bulk"] = {"people": seeded, "seconds": seed_seconds, "rate": seeded / seed_seconds}
        log(f"   seeded {seeded:,} people in {seed_seconds:.0f}s ({seeded / seed_seconds:,.0f}/s)")
    if have < args.scale_people:
        ctx.results["notes"].append(
            f"scale: stopped at {have:,} people (not {args.scale_people:,}) to keep the run within "
            f"{args.budget_minutes:g} minutes: at the rebuild's pace more would not have fitted")
    return have


def measure(ctx: Context) -> None:
    platform = ctx.platform
    log("7. rebuild and scale: a first `coproduction rebuild` of the projection as it is, to know its pace")
    ctx.results["rebuild_pilot"] = pilot = rebuild(ctx)
    log(f"   rebuild of {pilot['events']:,} events: {pilot['seconds']:.1f}s = {pilot['rate']:,.0f}/s")
    _add_people(ctx, len(ctx.people) + ctx.extra_people + ctx.args.events, pilot["rate"])
    ctx.results["rebuild"] = full = rebuild(ctx)
    log(f"   rebuild: {full['events']:,} events in {full['seconds']:.0f}s = {full['rate']:,.0f}/s")
    people = platform.scalar("gateway", "SELECT count(*) FROM portfolios")
    ctx.results["scale_people"] = people
    # the load left autovacuum and a checkpoint to do: let them finish first, so the reads below
    # measure the projection at rest at its new size, not PostgreSQL tidying up after a bulk load
    started = time.monotonic()
    with platform.pg("gateway") as conn:
        conn.execute("VACUUM (ANALYZE) portfolios, aggregates, change_log, inbox, audit_log, clients")
        conn.execute("CHECKPOINT")
    log(f"   portfolios in the projection: {people:,}; VACUUM ANALYZE and CHECKPOINT "
        f"({time.monotonic() - started:.0f}s); reads again")
    ctx.results["scale_reads"], _rounds = reads.best_rounds(ctx, ["baseline", "portfolio"],
                                                            max(1, ctx.args.rounds - 1))
    platform.check_alive()
