"""The table of figures: each row a figure, what was measured, its baseline, the target and the verdict."""
from __future__ import annotations


def _ms(us: float) -> str:
    return f"{us / 1000:.2f} ms"


def _ok(flag: bool | None) -> str:
    return "n/a" if flag is None else ("met" if flag else "**missed**")


def _throughput_row(figure: str, measured: dict | None, baseline_label: str, least: float) -> list[tuple]:
    """A row of events/s against a raw baseline, met when the ratio is at least least."""
    if not measured:
        return []
    ratio = measured["rate"] / measured["baseline"]
    return [(figure, f"{measured['rate']:,.0f}/s", f"{baseline_label}: {measured['baseline']:,.0f}/s",
             f"ratio {ratio:.2f} (≥ {least:g})", _ok(ratio >= least))]


def _read_rows(reads: dict) -> list[tuple]:
    """The gateway's reads against the bare audited endpoint (issue 18), the bare row as context."""
    audited, bare = reads.get("audited"), reads.get("baseline")
    if not audited:
        return []
    context = f"; bare row alone {bare['rate']:,.0f}/s, p99 {_ms(bare['p99_us'])}" if bare else ""
    rows = []
    if "portfolio" in reads:
        p, static = reads["portfolio"], reads.get("portfolio_static")
        ratio, p99 = p["rate"] / audited["rate"], p["p99_us"] / audited["p99_us"]
        beside = (f" (a static development token: {static['rate']:,.0f}/s, p99 {_ms(static['p99_us'])})"
                  if static else "")
        rows.append(("portfolio reads/s at 16 connections (OAuth access token)",
                     f"{p['rate']:,.0f}/s, p99 {_ms(p['p99_us'])}{beside}",
                     f"bare Flask + one indexed row + one audit row, one transaction: {audited['rate']:,.0f}/s, "
                     f"p99 {_ms(audited['p99_us'])}{context}",
                     f"ratio {ratio:.2f} (≥ 0.8); p99 {p99:.1f}× (≤ 2×)", _ok(ratio >= 0.8 and p99 <= 2)))
    if "admission" in reads:
        a = reads["admission"]
        ratio = a["rate"] / audited["rate"]
        rows.append(("admission summary reads/s (OAuth access token)", f"{a['rate']:,.0f}/s, p99 {_ms(a['p99_us'])}",
                     f"the same bare audited endpoint: {audited['rate']:,.0f}/s", f"ratio {ratio:.2f} (≥ 0.7)",
                     _ok(ratio >= 0.7)))
    return rows


def _fhir_rows(reads: dict) -> list[tuple]:
    """FHIR CarePlan search and read beside the JSON portfolio read with the same OAuth token (issue 17)."""
    json_read = reads.get("portfolio")
    rows = []
    for target, figure in (("fhir_search", "FHIR CarePlan search reads/s (`CarePlan?patient=`, OAuth token)"),
                           ("fhir_read", "FHIR CarePlan read reads/s (`CarePlan/{id}`, OAuth token)")):
        f = reads.get(target)
        if not f:
            continue
        beside = (f"JSON portfolio read, the same OAuth token: {json_read['rate']:,.0f}/s, p99 "
                  f"{_ms(json_read['p99_us'])} (FHIR {f['rate'] / json_read['rate']:.2f}×)" if json_read else "")
        rows.append((figure, f"{f['rate']:,.0f}/s, p99 {_ms(f['p99_us'])}, {f['errors']} errors", beside,
                     "beside the JSON read, in the same run, no errors", _ok(bool(json_read) and f["errors"] == 0)))
    return rows


def _audit_rows(a: dict | None) -> list[tuple]:
    """Issue 18: no request waits on an audit lock with 2 gateway processes; read → signed head."""
    if not a:
        return []
    return [(f"requests waiting on an audit lock, {a['processes']} gateway processes under read load",
             f"{a['waiting']} of {a['samples']:,} samples", f"pg_locks of the web backends, sampled during "
             f"{a['rate']:,.0f} portfolio reads/s ({a['errors']} errors)", "0", _ok(a["waiting"] == 0)),
            ("read → its record inside a signed tree head",
             f"p50 {a['signed_p50_ms']:.0f} ms, p99 {a['signed_p99_ms']:.0f} ms, max {a['signed_max_ms']:.0f} ms",
             f"{a['records']:,} records of that load", "p99 ≤ 1 s", _ok(a["signed_p99_ms"] <= 1000))]


def _write_row(w: dict | None) -> list[tuple]:
    if not w:
        return []
    return [("write → visible in the portfolio", f"p50 {w['p50']:.1f} ms, p99 {w['p99']:.1f} ms",
             f"bare POST p50 {w['bare_post_p50']:.2f} / p99 {w['bare_post_p99']:.2f} ms + RabbitMQ hop "
             f"p50 {w['hop_p50']:.2f} / p99 {w['hop_p99']:.2f} ms = p50 "
             f"{w['bare_post_p50'] + w['hop_p50']:.2f} / p99 {w['bare_post_p99'] + w['hop_p99']:.2f} ms",
             "p50 ≤ 15 ms, p99 ≤ 50 ms", _ok(w["p50"] <= 15 and w["p99"] <= 50))]


def _scale_rows(results: dict) -> list[tuple]:
    rows = []
    rb = results.get("rebuild")
    if rb:
        pilot = results.get("rebuild_pilot")
        rows.append(("rebuild of the projection from the services' feeds",
                     f"{rb['events']:,} events in {rb['seconds']:.0f} s = {rb['rate']:,.0f}/s"
                     + (f" (at {pilot['events']:,} events: {pilot['rate']:,.0f}/s)" if pilot else ""),
                     "events/s", "1,000,000 events in ≤ 300 s (≥ 3,333/s)", _ok(rb["rate"] >= 1_000_000 / 300)))
    s, reads = results.get("scale_reads"), results.get("reads", {}).get("best", {})
    if s and "baseline" in reads and "portfolio" in reads:
        big, small = s["portfolio"], reads["portfolio"]
        ratio = big["p99_us"] / small["p99_us"]
        rows.append((f"scale: portfolio p99, {results['people']:,} vs {results['scale_people']:,} people",
                     f"p99 {_ms(small['p99_us'])} → {_ms(big['p99_us'])} ({big['rate']:,.0f}/s)",
                     f"bare endpoint p99 in the same two moments: {_ms(reads['baseline']['p99_us'])} → "
                     f"{_ms(s['baseline']['p99_us'])}",
                     f"{ratio:.2f}× (≤ 1.2×)", _ok(ratio <= 1.2) if results["scale_people"] >= 1_000_000
                     else f"{_ok(ratio <= 1.2)} at {results['scale_people']:,} people; **1,000,000 not reached**"))
    sb = results.get("seed_bulk")
    if sb:
        rows.append(("seed: people written in bulk (`coproduction seed`, plans, one event each)",
                     f"{sb['people']:,} in {sb['seconds']:.0f} s = {sb['rate']:,.0f}/s", "",
                     "a million events in minutes", _ok(sb["rate"] * 60 * 10 >= 1_000_000)))
    return rows


def _memory_row(m: list[dict] | None) -> list[tuple]:
    if not m:
        return []
    worst = max(m, key=lambda x: x["rss_mb"])
    return [("memory: RSS of each web and worker process after the load",
             f"largest {worst['rss_mb']:.0f} MB ({worst['process']}), {len(m)} processes", "",
             "≤ 150 MB each", _ok(all(x["rss_mb"] <= 150 for x in m)))]


def table(results: dict) -> list[tuple]:
    """The rows, in the order of the bench's steps."""
    best_reads = results.get("reads", {}).get("best", {})
    return [*_read_rows(best_reads),
            *_fhir_rows(best_reads),
            *_audit_rows(results.get("audit")),
            *_write_row(results.get("write_visible")),
            *_throughput_row("relay: outbox events published/s (confirms, PostgreSQL outbox)",
                             results.get("relay"), "raw kombu publish, no confirms", 0.5),
            *_throughput_row("gateway consumer: events projected/s", results.get("consumer"),
                             "raw kombu consume-and-ack", 0.35),
            *_scale_rows(results),
            *_memory_row(results.get("memory"))]
