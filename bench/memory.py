"""Step 6: the resident memory of every web and worker process after the load."""
from __future__ import annotations

import subprocess
from pathlib import Path

from .context import Context
from .timing import log


def children(pid: int) -> list[int]:
    out = subprocess.run(["ps", "-o", "pid=", "--ppid", str(pid)], capture_output=True, text=True)
    return [int(x) for x in out.stdout.split()]


def rss_mb(pid: int) -> float | None:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    except OSError:
        return None
    return None


def measure(ctx: Context) -> None:
    rows = []
    for label, proc in ctx.platform.procs.items():
        if proc.poll() is not None:
            continue
        for pid, role in [(proc.pid, "master" if label.endswith("-web") else "")] + [
                (c, "worker") for c in children(proc.pid)]:
            rss = rss_mb(pid)
            if rss is not None:
                rows.append({"process": label + (f" {role}" if role else ""), "pid": pid, "rss_mb": rss})
    ctx.results["memory"] = rows
    worst = max(rows, key=lambda r: r["rss_mb"])
    log(f"6. memory after the load: {len(rows)} processes, largest {worst['process']} {worst['rss_mb']:.0f} MB")
