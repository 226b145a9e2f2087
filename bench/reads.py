"""Step 2: reads at 16 connections: the bare endpoint, the bare audited endpoint, the portfolio, the
admission summary, and with an OAuth access token the portfolio again and the FHIR CarePlan search
and read.

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

#: each read target's path, from a person's NHS number and their plan's id
PATHS = {"baseline": "/docs/{nhs}", "audited": "/audited/{nhs}", "portfolio": "/v1/people/{nhs}/portfolio",
         "admission": "/v1/people/{nhs}/admission-summary", "portfolio_static": "/v1/people/{nhs}/portfolio",
         "fhir_search": "/fhir/R4/CarePlan?patient=Patient/{nhs}", "fhir_read": "/fhir/R4/CarePlan/{plan}"}
#: the targets the bare app serves; the rest are the gateway's
BASELINES = ("baseline", "audited")
#: the gateway's targets called with an OAuth access token, as every client is in production; the
#: rest (the portfolio again, as context) with the hospital's static development token, which only
#: ALLOW_STATIC_TOKENS accepts and which costs a client lookup in the database on every request
WITH_OAUTH = ("portfolio", "admission", "fhir_search", "fhir_read")


def prepare(ctx: Context) -> None:
    """Admit every seeded person, copy their portfolios into the baseline's table, and write each
    target's file of paths."""
    platform, http = ctx.platform, requests.Session()
    hospital = {"Authorization": f"Bearer {platform.oauth.access_token()}"}
    docs, sizes, admission_sizes, plans = [], [], [], {}
    for nhs in ctx.people:
        platform.admit(http, nhs)
        r = http.get(f"{platform.gateway}/v1/people/{nhs}/portfolio", headers=hospital)
        r.raise_for_status()
        docs.append((nhs, r.content))
        plans[nhs] = r.json()["plan"]["id"]
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
        path.write_text("\n".join(template.format(nhs=n, plan=plans[n]) for n in ctx.people) + "\n")
        ctx.read_paths[name] = path


def read_round(ctx: Context, targets: list[str]) -> dict:
    """One wrk measurement of each target in turn, each after its warm-up."""
    out, platform = {}, ctx.platform
    access_token = platform.oauth.access_token() if set(targets) & set(WITH_OAUTH) else None
    for target in targets:
        if target in BASELINES:
            base, token = platform.baseline, None
        else:
            base = platform.gateway
            token = access_token if target in WITH_OAUTH else platform.tokens["hospital"]
        if ctx.args.warmup:
            ctx.wrk.run(base, ctx.read_paths[target], token, ctx.args.warmup)
        out[target] = r = ctx.wrk.run(base, ctx.read_paths[target], token, ctx.args.seconds)
        log(f"   {target:<15} {r['rate']:8,.0f} req/s  p50 {r['p50_us'] / 1000:6.2f} ms  "
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
