"""Step 2: reads at 16 connections, the bare endpoint, the portfolio and the admission summary.

Rounds are interleaved and the best round of each target is kept: the one least disturbed by
whatever else runs on the machine.
"""
from __future__ import annotations

import statistics

import psycopg
import requests

from .context import Context
from .platform import PG_URL
from .timing import log

PATHS = {"baseline": "/docs/{}", "portfolio": "/v1/people/{}/portfolio",
         "admission": "/v1/people/{}/admission-summary"}


def prepare(ctx: Context) -> None:
    """Admit every seeded person, copy their portfolios into the baseline's table, and write each
    target's file of paths."""
    platform, http = ctx.platform, requests.Session()
    hospital = {"Authorization": f"Bearer {platform.tokens['hospital']}"}
    docs, sizes, admission_sizes = [], [], []
    for nhs in ctx.people:
        platform.admit(http, nhs)
        r = http.get(f"{platform.gateway}/v1/people/{nhs}/portfolio", headers=hospital)
        r.raise_for_status()
        docs.append((nhs, r.content))
        sizes.append(len(r.content))
        if len(admission_sizes) < 100:
            r = http.get(f"{platform.gateway}/v1/people/{nhs}/admission-summary", headers=hospital)
            r.raise_for_status()
            admission_sizes.append(len(r.content))
    with psycopg.connect(PG_URL, autocommit=True) as conn:
        with conn.cursor() as cur:
            cur.executemany(f'INSERT INTO "{platform.baseline_schema}".docs (key, document) '
                            'VALUES (%s, %s::jsonb)', [(nhs, body.decode()) for nhs, body in docs])
        conn.execute(f'ANALYZE "{platform.baseline_schema}".docs')
    # the baseline answers with the same document, re-encoded by Flask like the gateway's
    check = http.get(f"{platform.baseline}/docs/{ctx.people[0]}")
    ctx.results["doc_bytes"] = {"portfolio_mean": round(statistics.mean(sizes)),
                                "baseline_mean_sample": len(check.content),
                                "portfolio_sample": sizes[0],
                                "admission_mean": round(statistics.mean(admission_sizes))}
    for name, template in PATHS.items():
        path = platform.var / f"paths-{name}.txt"
        path.write_text("\n".join(template.format(n) for n in ctx.people) + "\n")
        ctx.read_paths[name] = path


def read_round(ctx: Context, targets: list[str]) -> dict:
    """One wrk measurement of each target in turn, each after its warm-up."""
    out = {}
    for target in targets:
        if target == "baseline":
            base, token = ctx.platform.baseline, None
        else:
            base, token = ctx.platform.gateway, ctx.platform.tokens["hospital"]
        if ctx.args.warmup:
            ctx.wrk.run(base, ctx.read_paths[target], token, ctx.args.warmup)
        out[target] = r = ctx.wrk.run(base, ctx.read_paths[target], token, ctx.args.seconds)
        log(f"   {target:<10} {r['rate']:8,.0f} req/s  p50 {r['p50_us'] / 1000:6.2f} ms  "
            f"p99 {r['p99_us'] / 1000:6.2f} ms  errors {r['errors']}")
    return out


def best_rounds(ctx: Context, targets: list[str], count: int) -> tuple[dict, list[dict]]:
    """count interleaved rounds: the best (highest rate) of each target, and every round."""
    rounds = []
    for i in range(count):
        log(f"  round {i + 1}")
        rounds.append(read_round(ctx, targets))
    return {t: max((r[t] for r in rounds), key=lambda x: x["rate"]) for t in targets}, rounds


def measure(ctx: Context) -> None:
    args = ctx.args
    log(f"2. reads at {args.connections} connections (wrk), {args.rounds} interleaved rounds of "
        f"{args.seconds}s each")
    prepare(ctx)
    best, rounds = best_rounds(ctx, list(PATHS), args.rounds)
    ctx.results["reads"] = {"best": best, "rounds": rounds}
    ctx.platform.check_alive()
