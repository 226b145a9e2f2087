"""The reliability table: each fault-injection test records one row; pytest prints them at the end
and ``make reliability`` writes them to docs/reliability.md."""
from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass
from pathlib import Path

ROWS: list["Row"] = []
SCALE = os.environ.get("RELIABILITY_SCALE", "small")
FULL = SCALE == "full"
OUT = Path(__file__).resolve().parent.parent / "test-output" / "reliability.json"
COLUMNS = ("fault", "sent", "confirmed", "delivered", "lost", "duplicated", "dead_lettered", "recovery_s")


@dataclass
class Row:
    fault: str
    sent: int
    confirmed: int
    delivered: int
    lost: int
    duplicated: int
    dead_lettered: int
    recovery_s: float
    note: str = ""


def record(row: Row) -> Row:
    ROWS.append(row)
    OUT.parent.mkdir(exist_ok=True)
    existing = json.loads(OUT.read_text()) if OUT.exists() else {"scale": SCALE, "rows": []}
    existing["rows"] = [r for r in existing["rows"] if r["fault"] != row.fault] + [asdict(row)]
    existing["scale"] = SCALE
    OUT.write_text(json.dumps(existing, indent=2))
    return row


def table(rows) -> str:
    head = ("fault", "sent", "confirmed", "delivered", "lost", "duplicated", "dead-lettered", "recovery s")
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for r in rows:
        r = r if isinstance(r, dict) else asdict(r)
        lines.append("| " + " | ".join(str(r[c]) for c in COLUMNS) + " |")
    return "\n".join(lines)
