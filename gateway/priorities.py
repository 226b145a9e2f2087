"""Merging and ranking "what matters to me" across the four initiatives. Pure functions.

The rules, in one place (docs/portfolio.md explains them with worked cases):

Same item
  1. Two priorities with the same ``id`` are one item (a service may reuse an id read from the
     portfolio).
  2. Two priorities with different ids are one item when they have the same ``category`` and the
     same meaning: their wording is identical after normalising (lower case, punctuation and
     stop-words removed, simple stemming), or their normalised word sets overlap by at least
     ``SAME_MEANING`` (Jaccard).
Each item keeps every source ``{service, ref, recorded_at}``, the id of its oldest source (so ids
read from the portfolio stay stable), and the person's own newest wording (the newest text said by
the person, else the newest text).

Status
  The newest source decides the item's status. Achieved and cancelled items are listed apart
  (``past``), never dropped. When sources disagree (one says achieved or cancelled, another that
  it is active; or a newer source changed what an older one said) the item carries a
  ``conflicts`` entry naming both: a conflict is flagged, never merged away.

Ranking (current items)
  1. the person's own order (``rank``) in their newest agreed plan;
  2. how many initiatives hold it (more first);
  3. whether the person said it themselves;
  4. recency (newest source first).
"""
from __future__ import annotations

import re
from dataclasses import dataclass, field

SAME_MEANING = 0.8
PAST = ("achieved", "cancelled")

STOP_WORDS = frozenset("""
a an the my me i to of and or for with in on at by be is am are was were it its his her their our
your you we they he she them this that these those so as from up out about into over again more
most some any can could would should will just do does did get got have has had want wants like
able being
""".split())


def normalise(text: str) -> tuple[str, ...]:
    words = re.findall(r"[a-z0-9]+", text.lower().replace("'", ""))
    return tuple(stem(w) for w in words if w not in STOP_WORDS)


def stem(word: str) -> str:
    """A deliberately simple stemmer: walking/walked/walks -> walk, grandchildren -> grandchild."""
    for suffix, keep in (("ren", 4), ("ing", 4), ("ies", 3), ("ied", 3), ("ed", 4), ("es", 4), ("s", 3)):
        if word.endswith(suffix) and len(word) - len(suffix) >= keep - 1:
            base = word[: -len(suffix)]
            if suffix in ("ies", "ied"):
                return base + "y"
            if suffix == "ing" and len(base) > 2 and base[-1] == base[-2]:
                return base[:-1]  # running -> run
            return base
    return word


def same_meaning(a: dict, b: dict) -> bool:
    if a["category"] != b["category"]:
        return False
    na, nb = normalise(a["text"]), normalise(b["text"])
    if na == nb:
        return bool(na) or a["text"].strip().lower() == b["text"].strip().lower()
    sa, sb = set(na), set(nb)
    if not sa or not sb:
        return False
    return len(sa & sb) / len(sa | sb) >= SAME_MEANING


@dataclass
class Held:
    """One priority as one source holds it."""

    service: str
    ref: str
    priority: dict
    plan_rank: int | None = None  # rank in the person's newest agreed plan, if this is that plan


@dataclass
class _Group:
    members: list[Held] = field(default_factory=list)


def merge(held: list[Held]) -> dict:
    """Merge priorities from every source into ``{"current": [...], "past": [...]}``."""
    parent = list(range(len(held)))

    def find(i):
        while parent[i] != i:
            parent[i] = parent[parent[i]]
            i = parent[i]
        return i

    def union(i, j):
        ri, rj = find(i), find(j)
        if ri != rj:
            parent[max(ri, rj)] = min(ri, rj)

    by_id: dict[str, int] = {}
    for i, h in enumerate(held):
        pid = h.priority["id"]
        if pid in by_id:
            union(i, by_id[pid])
        else:
            by_id[pid] = i
    for i in range(len(held)):
        for j in range(i + 1, len(held)):
            if find(i) != find(j) and same_meaning(held[i].priority, held[j].priority):
                union(i, j)

    groups: dict[int, list[Held]] = {}
    for i, h in enumerate(held):
        groups.setdefault(find(i), []).append(h)

    items = [_item(members) for members in groups.values()]
    current = [i for i in items if i["status"] not in PAST]
    past = [i for i in items if i["status"] in PAST]
    current.sort(key=_rank_key)
    past.sort(key=lambda i: (i["_newest"], i["id"]), reverse=True)
    for n, item in enumerate(current, 1):
        item["position"] = n
    for item in current + past:
        del item["_newest"]
    return {"current": current, "past": past}


def _recorded(h: Held) -> str:
    return h.priority.get("recorded_at") or ""


def _statement_order(h: Held) -> tuple:
    """Oldest first; ties broken on every field, so the result never depends on arrival order."""
    q = h.priority
    return (_recorded(h), h.service, h.ref, q["id"], q.get("status", ""), q["text"], q.get("expressed_by", ""),
            q["category"], q.get("rank") or 0)


def _item(members: list[Held]) -> dict:
    members = sorted(members, key=_statement_order)
    oldest, newest = members[0], members[-1]
    by_person = [h for h in members if h.priority.get("expressed_by") == "person"]
    wording = (by_person or members)[-1].priority
    sources, seen = [], set()
    for h in members:
        key = (h.service, h.ref, h.priority["id"])
        if key not in seen:
            seen.add(key)
            sources.append({"service": h.service, "ref": h.ref, "priority_id": h.priority["id"],
                            "recorded_at": _recorded(h), "status": h.priority.get("status", "active")})
    plan_ranks = [h.plan_rank for h in members if h.plan_rank is not None]
    return {
        "id": oldest.priority["id"],
        "text": wording["text"],
        "category": newest.priority["category"],
        "status": newest.priority.get("status", "active"),
        "rank": min(plan_ranks) if plan_ranks else None,
        "expressed_by_person": bool(by_person),
        "initiatives": sorted({h.service for h in members}),
        "sources": sources,
        "conflicts": _conflicts(members),
        "_newest": _recorded(newest),
    }


def _conflicts(members: list[Held]) -> list[dict]:
    latest: dict[str, Held] = {}
    for h in members:  # members are oldest first: keep each service's newest statement
        latest[h.service] = h
    statements = sorted(latest.values(), key=_statement_order)
    out = []
    for older in statements:
        for newer in statements:
            if _recorded(newer) <= _recorded(older) or older is newer:
                continue
            s_old, s_new = older.priority.get("status", "active"), newer.priority.get("status", "active")
            if (s_old in PAST) != (s_new in PAST) or {s_old, s_new} == {"achieved", "cancelled"}:
                out.append({
                    "kind": "status",
                    "detail": f"{newer.service} says {s_new} ({_recorded(newer)}); "
                              f"{older.service} says {s_old} ({_recorded(older)})",
                    "newer": {"service": newer.service, "ref": newer.ref, "status": s_new},
                    "older": {"service": older.service, "ref": older.ref, "status": s_old},
                })
    return out


def _rank_key(item: dict):
    has_rank = item["rank"] is not None
    return (
        0 if has_rank else 1,
        item["rank"] if has_rank else 0,
        -len(item["initiatives"]),
        0 if item["expressed_by_person"] else 1,
        _neg(item["_newest"]),
        item["id"],
    )


def _neg(text: str) -> tuple:
    """Sort key that orders ISO timestamps newest first."""
    return tuple(-ord(c) for c in text)
