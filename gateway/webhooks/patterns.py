"""Subscription patterns: which event types a subscription wants (``fnmatch`` style: ``budget.*``),
and which initiative's read scope each type needs."""
from __future__ import annotations

import fnmatch
import re

from ..readers import READERS

PATTERN = re.compile(r"^[a-z0-9*?][a-z0-9.*?-]{0,63}$")


def known_types() -> list[str]:
    return sorted(READERS)


def matches(patterns: list[str], type_: str) -> bool:
    return any(fnmatch.fnmatchcase(type_, p) for p in patterns)


def wanted_by(sub, row) -> bool:
    """Whether a change-log row is for this subscription: its types, and a FHIR one's patient filter."""
    patient = (sub["fhir"] or {}).get("patient") if sub["kind"] == "fhir" else None
    return matches(sub["types"], row.type) and (patient is None or row.subject == patient)


def service_of(type_: str) -> str | None:
    entry = READERS.get(type_)
    return entry[0] if entry else None


def check_patterns(patterns: list[str]) -> list[str]:
    """Problems with a subscription's type patterns (empty when all are usable)."""
    problems = []
    types = known_types()
    for p in patterns:
        if not PATTERN.match(p):
            problems.append(f"{p!r} is not a type pattern (letters, digits, '.', '-', '*' and '?').")
        elif not any(fnmatch.fnmatchcase(t, p) for t in types):
            problems.append(f"{p!r} matches no event type the gateway receives ({', '.join(types)}).")
    return problems
