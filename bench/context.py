"""What the bench's steps share: the platform, the options, the figures so far and the people seeded."""
from __future__ import annotations

import argparse
import time
from dataclasses import dataclass, field
from pathlib import Path

from .load import Wrk
from .platform import Platform


@dataclass
class Context:
    platform: Platform
    args: argparse.Namespace
    wrk: Wrk
    #: every figure, by step; ``notes`` are printed under the table
    results: dict = field(default_factory=lambda: {"notes": []})
    #: the detailed people (step 1), whose portfolios the reads ask for
    people: list[str] = field(default_factory=list)
    #: the people the write → visible step added after them
    extra_people: int = 0
    #: one file of request paths per read target (baseline, portfolio, admission)
    read_paths: dict[str, Path] = field(default_factory=dict)
    started: float = field(default_factory=time.monotonic)
