"""The HTTP load generator: wrk, with ``bench/wrk_paths.lua`` picking a random path per request."""
from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path

from .timing import log

SCRIPT = Path(__file__).resolve().parent / "wrk_paths.lua"


def ensure_wrk() -> str:
    """The path of wrk, installed from Debian's packages if it is missing."""
    path = shutil.which("wrk")
    if path:
        return path
    log("wrk is not installed: installing it from Debian's packages (apt-get install -y wrk)")
    for cmd in (["apt-get", "install", "-y", "-q", "wrk"], ["apt-get", "update", "-q"],
                ["apt-get", "install", "-y", "-q", "wrk"]):
        subprocess.run(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT)
        if shutil.which("wrk"):
            return shutil.which("wrk")
    raise SystemExit("wrk is needed for the read benchmarks: apt-get install -y wrk")


def wrk_version() -> str:
    try:
        out = subprocess.run(["wrk", "-v"], capture_output=True, text=True, timeout=10)
        return " ".join((out.stdout or out.stderr).split()[:2]) or "wrk"
    except Exception:
        return "wrk (version unknown)"


class Wrk:
    """wrk with fixed threads and connections; each run returns its figures (rate, p50_us, p99_us, …)."""

    def __init__(self, threads: int, connections: int):
        self.path = ensure_wrk()
        self.threads, self.connections = threads, connections

    def run(self, base: str, paths: Path, token: str | None, seconds: float) -> dict:
        """GET random lines of the file paths from base for seconds, with token as a bearer token."""
        env = dict(os.environ, BENCH_TOKEN=token or "")
        cmd = [self.path, "-t", str(self.threads), "-c", str(self.connections), "-d", f"{seconds:g}s",
               "--timeout", "10s", "-s", str(SCRIPT), base, "--", str(paths)]
        out = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=seconds + 60)
        line = [l for l in out.stdout.splitlines() if l.startswith("{")]
        if not line:
            raise RuntimeError(f"wrk printed no figures: {out.stdout[-500:]} {out.stderr[-500:]}")
        r = json.loads(line[-1])
        r["rate"] = r["requests"] / (r["duration_us"] / 1e6)
        r["errors"] = sum(r[k] for k in r if k.startswith("errors_"))
        return r
