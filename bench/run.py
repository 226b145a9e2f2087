"""``make bench``: the platform's figures, each next to its raw baseline measured in the same run.

Everything runs on this machine against the local PostgreSQL and RabbitMQ, in schemas and queue
names of its own (a fresh ``bench<hex>`` prefix), cleaned up afterwards. The platform runs as the
very processes ``coproduction run`` starts (gunicorn sync workers, relays, the consumer, the audit
sequencer); the baseline is a bare Flask app under the same gunicorn settings. Load comes from wrk (16
connections), except where a figure is a sequence of single calls (write → visible).

The steps, in order:
 1. seed the detailed people (``coproduction seed``): relays and the consumer project them;
 2. reads at 16 connections: bare endpoint, bare audited endpoint (the read and one audit row in
    one transaction), portfolio, admission summary, and with an OAuth access token the portfolio
    again and the FHIR CarePlan search and read; interleaved rounds, best round of each: the least
    disturbed by whatever else runs;
 3. audit: portfolio reads over 2 gateway processes with pg_locks sampled (no request may wait on
    an audit lock), and each read's time until a signed tree head covers its record;
 4. write → visible in the portfolio, against a bare POST plus a raw RabbitMQ one-way hop;
 5. relay: a batch of events committed at once, published with confirms, against raw kombu
    publishing of the same messages without confirms; then the consumer projecting them, against
    raw kombu consume-and-ack of the same messages;
 6. memory: the RSS of every web and worker process after that load;
 7. scale: people added up to ``--scale-people`` (published, bulk), ``coproduction rebuild`` of the
    whole projection from the services' feeds (events/s), and the portfolio's p99 again.

The table is printed and written to docs/performance.md (``--no-write`` to leave it alone). This module
is the entry point; each step is a module of its own (docs/performance.md, "The bench's code").
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import time
import traceback
from datetime import datetime, timezone
from pathlib import Path

from . import audit, events, memory, reads, report, scale, seeding, writes
from .context import Context
from .load import Wrk
from .platform import Platform
from .timing import log


def options(argv: list[str] | None) -> argparse.Namespace:
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
    return args


def settings_line(args: argparse.Namespace) -> str:
    return (f"{args.workers} gunicorn sync workers per web process; wrk {args.connections} "
            f"connections, {args.wrk_threads} threads, {args.rounds} round(s) of {args.seconds:g} s "
            f"after {args.warmup:g} s warm-up; {args.people:,} detailed people; "
            f"{args.writes} writes; {args.events:,} relay/consumer events; "
            f"{'no scale step' if args.skip_scale else f'{args.scale_people:,} people at scale'}")


def main(argv: list[str] | None = None) -> int:
    args = options(argv)
    started = time.monotonic()
    load_before = " ".join(f"{x:.1f}" for x in os.getloadavg())
    platform = Platform(args.workers)
    ctx = Context(platform, args, Wrk(args.wrk_threads, args.connections))
    log(f"bench {platform.tag}: schemas {platform.tag}_*, queues {platform.tag}.*, logs in {platform.var}")
    ok = False
    try:
        platform.start()
        seeding.seed_detailed(ctx)
        reads.measure(ctx)
        audit.measure(ctx)
        writes.measure(ctx)
        events.relay_and_consumer(ctx)
        memory.measure(ctx)
        ctx.results["people"] = args.people
        if not args.skip_scale:
            scale.measure(ctx)
        ok = True
    except Exception as exc:
        log(f"bench failed: {exc}")
        ctx.results["notes"].append(f"the run stopped early: {exc}")
        traceback.print_exc()
    finally:
        ctx.results["people"] = args.people
        if "memory" not in ctx.results and platform.procs:
            memory.measure(ctx)
        log("cleaning up")
        platform.cleanup()

    info = {"date": datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC"), "machine": report.machine(),
            "load_before": load_before, "load_after": " ".join(f"{x:.1f}" for x in os.getloadavg()),
            "minutes": (time.monotonic() - started) / 60,
            "settings": settings_line(args)}
    report.print_table(ctx.results)
    if args.json:
        args.json.write_text(json.dumps({"results": ctx.results, "info": info}, indent=2, default=str))
    if not args.no_write and ok and not args.quick:
        report.write_doc(ctx.results, info)
    elif not args.no_write:
        log("docs/performance.md left as it was (" + ("quick run" if args.quick else "the run stopped early") + ")")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
