"""``coproduction audit verify [--witness FILE]``: the whole log, record by record, and its first bad leaf.

Every record is hashed again in leaf order and the tree rebuilt from those hashes alone. What it is
compared with decides what can be found:
- the database's own leaf hashes and signed heads find a record edited by someone who did not
  recompute the hashes, a gap, and a head whose signature or root is wrong;
- a witness that keeps leaf hashes finds any change to a witnessed record, however well every
  stored hash was recomputed (and re-signed), and names the exact first leaf that differs; a record
  removed from the end, inserted or moved shows as the first leaf that is not what was witnessed;
- a heads-only witness finds the same changes but can only say between which two witnessed heads
  the first bad leaf lies (unless the stored leaf hashes still betray it).
"""
from __future__ import annotations

from dataclasses import dataclass, field

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from ..models import audit_log, audit_tree_nodes
from . import leaf_hash_of, merkle
from .tree import heads as signed_heads

CHUNK = 5000
KEPT = 100  # problems described; past that only counted (one insertion early on moves every later leaf)


@dataclass
class Report:
    leaves: int = 0
    heads: int = 0
    unsequenced: int = 0
    problems: list[str] = field(default_factory=list)
    more_problems: int = 0
    first_bad_leaf: int | None = None
    first_bad_between: tuple[int, int] | None = None  # [lo, hi) when only localised

    def bad(self, leaf: int | None, message: str) -> None:
        if len(self.problems) < KEPT:
            self.problems.append(message)
        else:
            self.more_problems += 1
        if leaf is not None and (self.first_bad_leaf is None or leaf < self.first_bad_leaf):
            self.first_bad_leaf = leaf

    def summary(self) -> str:
        if self.first_bad_leaf is not None:
            return f"first bad leaf: {self.first_bad_leaf}"
        if self.first_bad_between:
            lo, hi = self.first_bad_between
            return f"first bad leaf: between {lo} and {hi - 1} (a heads-only witness localises no further)"
        return ""


def _leaves(session: Session):
    """(record, the leaf hash stored for its index) in leaf order, read a chunk at a time."""
    start = 0
    while True:
        rows = session.execute(select(audit_log).where(audit_log.c.leaf_index >= start)
                               .order_by(audit_log.c.leaf_index).limit(CHUNK)).mappings().all()
        if not rows:
            return
        hi = rows[-1]["leaf_index"] + 1
        stored = {r.idx: bytes(r.hash) for r in session.execute(
            select(audit_tree_nodes.c.idx, audit_tree_nodes.c.hash).where(
                audit_tree_nodes.c.level == 0, audit_tree_nodes.c.idx >= start, audit_tree_nodes.c.idx < hi))}
        for row in rows:
            yield row, stored.get(row["leaf_index"])
        start = hi


def verify(session: Session, key, witnessed=None) -> Report:
    """Check the log in ``session`` with ``key`` (the signing key's public half) and, if given, a
    :class:`gateway.audit.witness.WitnessState`."""
    report = Report()
    stored_heads = {h.tree_size: h for h in signed_heads(session)}
    report.heads = len(stored_heads)
    for size, head in sorted(stored_heads.items()):
        if not head.valid_for(key):
            report.bad(None, f"the stored tree head of size {size} is not signed by key {head.key_id[:16]}…")
    witness_heads = {h.tree_size: h for h in (witnessed.heads if witnessed else [])}
    witness_leaves = witnessed.leaf_hashes() if witnessed else None
    tree, expected, last_good_witnessed = merkle.CompactRange(), 0, 0
    for row, stored_leaf in _leaves(session):
        index = row["leaf_index"]
        if index != expected:
            report.bad(expected, f"leaf {expected} is missing (the next record, id {row['id']}, is at leaf {index})")
            break
        leaf = leaf_hash_of(row)
        if stored_leaf != leaf:
            report.bad(index, f"leaf {index} (record id {row['id']}) does not match the leaf hash stored when "
                              "it was sequenced: altered")
        if witness_leaves is not None and index < len(witness_leaves) and witness_leaves[index] != leaf:
            report.bad(index, f"leaf {index} (record id {row['id']}) is not the record the witness saw there: "
                              "altered, inserted, removed or moved")
        tree.append(leaf)
        expected += 1
        _check_roots(report, tree, stored_heads, witness_heads)
        if tree.size in witness_heads and tree.root() == witness_heads[tree.size].root_hash:
            last_good_witnessed = tree.size
    report.leaves = expected
    latest = max(stored_heads, default=0)
    if expected < latest:
        report.bad(expected, f"leaf {expected} is missing: the records end at {expected}, the signed head says {latest}")
    witnessed_size = max(witness_heads, default=0)
    if expected < witnessed_size:
        report.bad(expected, f"leaf {expected} is missing: the log holds {expected} leaves, the witness saw "
                             f"{witnessed_size}: records were removed")
    if latest < witnessed_size:
        report.bad(None, f"the log's latest signed head ({latest}) is older than the witnessed head "
                         f"({witnessed_size}): the log was rolled back")
    if report.problems and report.first_bad_leaf is None and witness_heads:
        failed = min((s for s in witness_heads if s > last_good_witnessed), default=None)
        if failed is not None:
            report.first_bad_between = (last_good_witnessed, failed)
    report.unsequenced = session.execute(select(func.count()).select_from(audit_log)
                                         .where(audit_log.c.leaf_index.is_(None))).scalar_one()
    return report


def _check_roots(report: Report, tree: merkle.CompactRange, stored_heads: dict, witness_heads: dict) -> None:
    size = tree.size
    if size not in stored_heads and size not in witness_heads:
        return
    root = tree.root()
    if size in stored_heads and stored_heads[size].root_hash != root:
        report.bad(None, f"the stored tree head of size {size} does not match the records")
    if size in witness_heads and witness_heads[size].root_hash != root:
        report.bad(None, f"the records do not build the witnessed head of size {size}")
