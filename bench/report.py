"""The report: the table printed, and docs/performance.md written from it (its analysis kept)."""
from __future__ import annotations

import os
import platform as pyplatform
from pathlib import Path

from .figures import table
from .load import wrk_version
from .platform import PG_URL, ROOT
from .timing import log

DOC = ROOT / "docs" / "performance.md"
ANALYSIS = "## Where the time goes"  # the hand-written part of the doc, below the generated one


def machine() -> dict:
    cpu = "unknown"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    mem = 0
    try:
        mem = int(Path("/proc/meminfo").read_text().split()[1]) // 1024 // 1024
    except (OSError, ValueError, IndexError):
        pass
    try:
        import psycopg
        with psycopg.connect(PG_URL) as c:
            pg = c.execute("SHOW server_version").fetchone()[0]
    except Exception:
        pg = "unknown"
    return {"cpu": cpu, "cores": os.cpu_count(), "memory_gb": mem, "python": pyplatform.python_version(),
            "postgresql": pg, "kernel": pyplatform.release(), "wrk": wrk_version()}


def print_table(results: dict) -> None:
    rows = table(results)
    width = max((len(r[0]) for r in rows), default=10)
    print("\n" + "=" * 100)
    for figure, measured, baseline, target, verdict in rows:
        print(f"{figure:<{width}}  {measured}\n{'':<{width}}  baseline: {baseline}\n{'':<{width}}  {target}: {verdict}")
    for note in results["notes"]:
        print("note:", note)
    print("=" * 100)


def write_doc(results: dict, info: dict) -> None:
    """docs/performance.md from this run's figures, with the hand-written analysis below them kept."""
    kept = ""
    if DOC.exists() and ANALYSIS in DOC.read_text():
        kept = "\n" + DOC.read_text()[DOC.read_text().index(ANALYSIS):]
    DOC.write_text(markdown(results, info) + kept)
    log("wrote docs/performance.md")


def markdown(results: dict, info: dict) -> str:
    lines = [
        "# Performance",
        "",
        "Every figure is measured by `make bench` next to its raw baseline, in the same run, on the same",
        "machine and the same server settings (gunicorn sync workers, PostgreSQL on 127.0.0.1, RabbitMQ on",
        "127.0.0.1). On a shared 2-core machine absolute times are noise; the ratios are the figures.",
        "",
        f"**Last run:** {info['date']} · {info['machine']['cpu']}, {info['machine']['cores']} cores, "
        f"{info['machine']['memory_gb']} GB · PostgreSQL {info['machine']['postgresql']} · Python "
        f"{info['machine']['python']} · {info['machine']['wrk']} · load average before/after "
        f"{info['load_before']} / {info['load_after']} · whole run {info['minutes']:.1f} min",
        "",
        "| figure | measured | baseline in the same run | target | |",
        "|---|---|---|---|---|",
    ]
    for row in table(results):
        lines.append("| " + " | ".join(row) + " |")
    lines += ["", "Settings: " + info["settings"], ""]
    for note in results.get("notes", []):
        lines.append(f"- {note}")
    mem = results.get("memory")
    if mem:
        lines += ["", "<details><summary>RSS of every process after the load</summary>", "",
                  "| process | RSS (MB) |", "|---|---|"]
        lines += [f"| {m['process']} | {m['rss_mb']:.0f} |" for m in sorted(mem, key=lambda x: -x["rss_mb"])]
        lines += ["", "</details>"]
    lines += [
        "",
        "## How to reproduce",
        "",
        "```",
        "make bench                       # RabbitMQ and PostgreSQL running (make services starts them)",
        ".venv/bin/python -m bench.run --help   # sizes, rounds, durations; --quick for a short run",
        "```",
        "",
        "The bench installs `wrk` from Debian's packages if it is missing, uses its own PostgreSQL schemas",
        "and RabbitMQ names (a fresh `bench<hex>` prefix) and removes them afterwards.",
        "",
        "How each figure is measured:",
        "",
        "- **Reads** (portfolio, admission summary): wrk with 16 connections over 2 threads, each request a",
        "  random one of the seeded people, with a hospital client's OAuth access token, as every client",
        "  calls in production (its admission of each person declared first, as docs/access.md asks of a",
        "  hospital; the token granted every read scope of the hospital role, so it is shown what the",
        "  static development token is shown, and that token's read is measured beside it as context: it",
        "  looks its client up in the database on every request). The platform runs with its audit",
        "  sequencer, as `coproduction run` starts it, so every read is sequenced into the signed log during",
        "  the run. The baseline is `bench/baseline_app.py`, a bare Flask app under the same gunicorn",
        "  settings, at `/audited/<key>`: what an audited read must do and no more (issue 18), one indexed",
        "  jsonb row read (a copy of the very portfolio document the gateway returned) and one row appended",
        "  to an `audit_log` shaped like the gateway's, committed in one transaction before the answer. The",
        "  bare row alone (`/docs/<key>`, no audit row) is measured too and shown as context. Rounds are",
        "  interleaved (bare, bare audited, portfolio, admission, the static token's portfolio, the FHIR",
        "  reads, again) and the",
        "  best round of each is kept, so a neighbour's burst on the shared machine does not decide a figure.",
        "- **FHIR** (issue 17): `GET /fhir/R4/CarePlan?patient=Patient/{nhs}` and",
        "  `GET /fhir/R4/CarePlan/{plan id}` for the same people in the same rounds, with an OAuth access",
        "  token got at `/oauth2/token` by a SMART Backend Services client of the hospital's organisation",
        "  (an ES384 key registered as its JWK Set, scope `portfolio:read plans:read budgets:read",
        "  decisions:read groups:read system/CarePlan.rs`; a fresh token each round), shown beside the JSON",
        "  portfolio read with that same token.",
        "- **Audit under 2 gateway processes** (issue 18): a second gateway web process is started beside",
        "  the first, and wrk reads portfolios from both at once (8 connections each) while `pg_locks` is",
        "  sampled every 3 ms for the gateway's web backends (named by `PGAPPNAME`, as",
        "  `tests/test_audit_scale.py` does): a sample counts when one of them holds or waits on an",
        "  advisory lock, or waits on any lock. Then, once the sequencer has sequenced every record, each",
        "  record written during that load is timed from its `at` to the signing time of the first signed",
        "  tree head whose `tree_size` covers its leaf.",
        "- **Write → visible**: one plan at a time POSTed through the gateway (which routes it to the plans",
        "  service), then the portfolio polled until it shows that plan: the whole road (gateway, service,",
        "  outbox, relay with confirms, RabbitMQ, consumer, projection, read; the hospital's admission is",
        "  declared before the clock starts). Baseline: a bare POST that",
        "  inserts and commits one row, plus one persistent message's one-way trip through RabbitMQ.",
        "- **Relay**: a batch of plan events committed in one transaction (the relay process running, woken",
        "  by NOTIFY); the time from the rows becoming visible to the outbox having none unsent. Baseline:",
        "  the same bodies and routing keys published by kombu, persistent, without confirms.",
        "- **Consumer**: those events waiting in the gateway's queue while its consumer was stopped; the",
        "  consumer started and the time from its first projected event to its last. Baseline: kombu",
        "  consuming and acknowledging the same messages with the same prefetch.",
        "- **Rebuild**: `coproduction rebuild` over every event in every service's feed (1,000,000 people",
        "  with a plan each, written by `coproduction seed` in bulk, plus the detailed people).",
        "- **Scale**: the same reads of the same detailed people with the projection holding",
        "  1,000,000 people; compared with the first reads, when it held the detailed people only.",
        "- **Memory**: VmRSS of every gunicorn master and worker, relay, consumer, webhook dispatcher and",
        "  audit sequencer.",
        "",
        "Data: `coproduction seed --people N` (`coproduction seed --help`): detailed people through every service's",
        "own HTTP handlers, bulk people through the plans model and outbox in large transactions.",
        "",
        "The bench's code, one module per job: `bench/run.py` the entry point and its options;",
        "`launcher.py` all it takes from the platform's composition (the processes `coproduction run`",
        "starts, the audit sequencer among them, the migrations, the clients and the OAuth client, the",
        "development secrets); `platform.py` those processes, ports and schemas; `load.py` wrk;",
        "`seeding.py`, `reads.py`, `audit.py` (2 gateway processes, the lock sampler, read → signed head),",
        "`writes.py`, `events.py` (relay, consumer, rebuild), `memory.py` and `scale.py` the steps;",
        "`rabbit.py` the raw RabbitMQ baselines; `baseline_app.py` the bare Flask app (bare and audited",
        "reads, the bare write); `figures.py` the table and its ratios; `report.py` the console and this page.",
        "",
    ]
    return "\n".join(lines)

