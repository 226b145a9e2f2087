"""NHS numbers for tests: valid (Modulus 11) and never handed out twice.

``new_nhs()`` gives a person no other test has, even when several pytest processes share the
databases: each process takes blocks of prefixes from one PostgreSQL sequence. Its numbers start
with 7, a range no test writes by hand. ``numbered(n, series)`` is for tests that name people by
index in a platform of their own: the same number for the same n, every run.
"""
from __future__ import annotations

import threading

import psycopg

from coproduction.nhs_number import with_check_digit
from harness import PG_URL

FIRST_PREFIX = 700_000_000
BLOCK = 1000
BLOCKS = 100_000  # 7xx xxx xxx: the whole range, taken again from the start once used up
SEQUENCE = "test_nhs_number_blocks"

_lock = threading.Lock()
_prefixes: list[int] = []


def _take_block() -> list[int]:
    with psycopg.connect(PG_URL, autocommit=True) as conn:
        # an advisory lock so two processes creating the sequence at once do not collide
        conn.execute("SELECT pg_advisory_lock(hashtext(%s))", (SEQUENCE,))
        conn.execute(f"CREATE SEQUENCE IF NOT EXISTS {SEQUENCE} MINVALUE 0 START 0 MAXVALUE {BLOCKS - 1} CYCLE")
        conn.execute("SELECT pg_advisory_unlock(hashtext(%s))", (SEQUENCE,))
        block = conn.execute(f"SELECT nextval('{SEQUENCE}')").fetchone()[0]
    start = FIRST_PREFIX + block * BLOCK
    return list(range(start + BLOCK - 1, start - 1, -1))  # popped from the end: in ascending order


def new_nhs() -> str:
    """A valid NHS number nobody else in this run, or in another process on the same databases, has."""
    with _lock:
        while True:
            if not _prefixes:
                _prefixes.extend(_take_block())
            number = with_check_digit(f"{_prefixes.pop():09d}")
            if number:
                return number


def numbered(n: int, series: int) -> str:
    """The n-th number of a fixed series (``series`` is a 9-digit prefix to count from)."""
    prefix = series + n * 16  # invalid prefixes never come two in a row: strides never overlap
    while not with_check_digit(f"{prefix:09d}"):
        prefix += 1
    return with_check_digit(f"{prefix:09d}")
