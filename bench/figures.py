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
    base = reads.get("baseline")
    if not base:
        return []
    rows = []
    if "portfolio" in reads:
        p = reads["portfolio"]
        ratio, p99 = p["rate"] / base["rate"], p["p99_us"] / base["p99_us"]
        rows.append(("portfolio reads/s at 16 connections",
                     f"{p['rate']:,.0f}/s, p99 {_ms(p['p99_us'])}",
                     f"bare Flask + one indexed row: {base['rate']:,.0f}/s, p99 {_ms(base['p99_us'])}",
                     f"ratio {ratio:.2f} (≥ 0.8); p99 {p99:.1f}× (≤ 2×)", _ok(ratio >= 0.8 and p99 <= 2)))
    if "admission" in reads:
        a = reads["admission"]
        ratio = a["rate"] / base["rate"]
        rows.append(("admission summary reads/s", f"{a['rate']:,.0f}/s, p99 {_ms(a['p99_us'])}",
                     f"the same bare endpoint: {base['rate']:,.0f}/s", f"ratio {ratio:.2f} (≥ 0.7)", _ok(ratio >= 0.7)))
    return rows


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
    """The rows, in the order the bench has always printed them."""
    return [*_read_rows(results.get("reads", {}).get("best", {})),
            *_write_row(results.get("write_visible")),
            *_throughput_row("relay: outbox events published/s (confirms, PostgreSQL outbox)",
                             results.get("relay"), "raw kombu publish, no confirms", 0.5),
            *_throughput_row("gateway consumer: events projected/s", results.get("consumer"),
                             "raw kombu consume-and-ack", 0.35),
            *_scale_rows(results),
            *_memory_row(results.get("memory"))]
