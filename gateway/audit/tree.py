"""The stored Merkle log: signed tree heads, and proofs built from stored perfect subtrees.

A proof for any tree size up to the latest needs O(log n) hashes, each the fold of O(log n) stored
perfect subtrees: one query fetches all of them, never a scan of the leaves.
"""
from __future__ import annotations

from sqlalchemy import select, tuple_
from sqlalchemy.orm import Session

from ..models import audit_log, audit_tree_heads, audit_tree_nodes
from . import merkle
from .keys import TreeHead


def latest_head(session: Session) -> TreeHead | None:
    row = session.execute(select(audit_tree_heads).order_by(audit_tree_heads.c.tree_size.desc()).limit(1)).first()
    return TreeHead.from_row(row) if row else None


def head_at(session: Session, tree_size: int) -> TreeHead | None:
    row = session.execute(select(audit_tree_heads).where(audit_tree_heads.c.tree_size == tree_size)).first()
    return TreeHead.from_row(row) if row else None


def heads(session: Session) -> list[TreeHead]:
    return [TreeHead.from_row(r) for r in session.execute(
        select(audit_tree_heads).order_by(audit_tree_heads.c.tree_size))]


def perfect_nodes(session: Session, wanted) -> dict[tuple[int, int], bytes]:
    wanted = sorted(set(wanted))
    if not wanted:
        return {}
    found = {}
    for start in range(0, len(wanted), 500):  # bounded IN lists
        chunk = wanted[start:start + 500]
        rows = session.execute(select(audit_tree_nodes).where(
            tuple_(audit_tree_nodes.c.level, audit_tree_nodes.c.idx).in_(chunk)))
        found.update({(r.level, r.idx): bytes(r.hash) for r in rows})
    missing = [w for w in wanted if w not in found]
    if missing:
        raise LookupError(f"the log's stored subtrees {missing[:5]} are missing")
    return found


def range_hashes(session: Session, ranges: list[tuple[int, int]]) -> list[bytes]:
    """MTH(D[lo:hi]) for each range, from stored perfect subtrees (one query)."""
    parts = [merkle.perfect_parts(lo, hi) for lo, hi in ranges]
    nodes = perfect_nodes(session, (p for ps in parts for p in ps))
    return [merkle.fold([nodes[p] for p in ps]) for ps in parts]


def frontier(session: Session, tree_size: int) -> merkle.CompactRange:
    """The compact range of the first ``tree_size`` leaves: where the next leaf is appended."""
    parts = merkle.perfect_parts(0, tree_size)
    nodes = perfect_nodes(session, parts)
    return merkle.CompactRange(tree_size, [nodes[p] for p in parts])


def inclusion_proof(session: Session, leaf_index: int, tree_size: int) -> dict:
    path = range_hashes(session, merkle.inclusion_ranges(leaf_index, tree_size))
    [leaf] = range_hashes(session, [(leaf_index, leaf_index + 1)])
    return {"leaf_index": leaf_index, "tree_size": tree_size, "leaf_hash": leaf.hex(),
            "inclusion_path": [h.hex() for h in path]}


def consistency_proof(session: Session, first: int, second: int) -> dict:
    path = [] if first == second else range_hashes(session, merkle.consistency_ranges(first, second))
    return {"first": first, "second": second, "consistency_path": [h.hex() for h in path]}


def leaf_hashes(session: Session, start: int, end: int) -> list[bytes]:
    rows = session.execute(select(audit_tree_nodes.c.idx, audit_tree_nodes.c.hash).where(
        audit_tree_nodes.c.level == 0, audit_tree_nodes.c.idx >= start, audit_tree_nodes.c.idx < end)
        .order_by(audit_tree_nodes.c.idx)).all()
    if [r.idx for r in rows] != list(range(start, end)):
        raise LookupError(f"the log's stored leaves {start}..{end - 1} are not all there")
    return [bytes(r.hash) for r in rows]


def record_at(session: Session, leaf_index: int):
    return session.execute(select(audit_log).where(audit_log.c.leaf_index == leaf_index)).mappings().first()
