"""Step 4: write → visible in the portfolio, against a bare POST plus a raw RabbitMQ one-way hop."""
from __future__ import annotations

import statistics
import time

import requests

from . import launcher
from .context import Context
from .platform import Platform
from .rabbit import rabbit_hops
from .timing import log, pct

VISIBLE_WITHIN = 30  # seconds


def plan_body(nhs: str) -> dict:
    return {"nhs_number": nhs, "conditions": ["type 2 diabetes"],
            "priorities": [{"text": "Walk my grandson to school", "category": "physical_activity",
                            "expressed_by": "person", "rank": 1, "status": "active"}],
            "goals": [], "actions": [{"text": "Walk 15 minutes after lunch", "owner": "person"}],
            "next_review_date": "2027-03-14"}


def _write_then_read(http: requests.Session, platform: Platform, nhs: str) -> tuple[float, float, int]:
    """POST one plan as the GP, poll the portfolio as the hospital until it shows it: (ms to visible,
    ms of the POST, polls). The hospital's admission is declared before the clock starts."""
    gateway = platform.gateway
    gp = {"Authorization": f"Bearer {platform.tokens['gp']}"}
    hospital = {"Authorization": f"Bearer {platform.tokens['hospital']}"}
    platform.admit(http, nhs)
    t0 = time.perf_counter()
    r = http.post(f"{gateway}/v1/plans", json=plan_body(nhs), headers=gp)
    t_post = time.perf_counter()
    if r.status_code != 201:
        raise RuntimeError(f"POST /v1/plans answered {r.status_code}: {r.text[:300]}")
    plan_id = r.json()["id"]
    polls = 0
    while True:
        g = http.get(f"{gateway}/v1/people/{nhs}/portfolio", headers=hospital)
        polls += 1
        if g.status_code == 200 and (g.json().get("plan") or {}).get("id") == plan_id:
            break
        if time.perf_counter() - t0 > VISIBLE_WITHIN:
            raise RuntimeError(f"plan {plan_id} not visible in the portfolio after {VISIBLE_WITHIN}s")
    return (time.perf_counter() - t0) * 1000, (t_post - t0) * 1000, polls


def measure(ctx: Context) -> None:
    n, platform = ctx.args.writes, ctx.platform
    log(f"4. write → visible: {n} plans POSTed through the gateway, each polled in the portfolio until shown")
    numbers = launcher.nhs_numbers(n, start=len(ctx.people))
    ctx.extra_people = n
    http = requests.Session()
    visible, posts, polls = zip(*(_write_then_read(http, platform, nhs) for nhs in numbers))
    bare = []
    for nhs in numbers:
        t0 = time.perf_counter()
        r = http.post(f"{platform.baseline}/items", json=plan_body(nhs))
        bare.append((time.perf_counter() - t0) * 1000)
        assert r.status_code == 201, r.text
    hops = rabbit_hops(platform.tag + ".", n)
    ctx.results["write_visible"] = w = {
        "n": n, "p50": pct(visible, 50), "p99": pct(visible, 99), "max": max(visible),
        "post_p50": pct(posts, 50), "post_p99": pct(posts, 99), "polls_mean": statistics.mean(polls),
        "bare_post_p50": pct(bare, 50), "bare_post_p99": pct(bare, 99),
        "hop_p50": pct(hops, 50), "hop_p99": pct(hops, 99)}
    log(f"   visible p50 {w['p50']:.1f} ms  p99 {w['p99']:.1f} ms (the POST alone p50 {w['post_p50']:.1f}); "
        f"baseline POST p50 {w['bare_post_p50']:.2f} + hop p50 {w['hop_p50']:.2f} ms")
    platform.check_alive()
