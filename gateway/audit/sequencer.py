"""``coproduction audit sequence``: committed audit records into the Merkle log, batch by batch.

One batch is one transaction: the waiting records get consecutive leaf indexes (in id order), the
perfect subtrees they complete are stored, and a new signed tree head is written. A crash anywhere
rolls all of it back, so a restarted sequencer sequences every committed record exactly once.

On PostgreSQL the batch takes an advisory lock that only sequencers take (a second sequencer started
by mistake waits its turn; requests never touch it). The sequencer wakes on a short poll of the
unsequenced index, not LISTEN/NOTIFY: a NOTIFY in every request would take PostgreSQL's global
notify-queue lock at each commit, the very serialisation this log removes.
"""
from __future__ import annotations

import logging
import os
import threading
import time

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from prometheus_client import Counter, Histogram
from sqlalchemy import bindparam, select, text, update

from coproduction.db import DB_UNAVAILABLE, Database

from ..models import audit_log, audit_tree_heads, audit_tree_nodes
from . import leaf_hash_of
from .keys import TreeHead
from .tree import frontier, latest_head

log = logging.getLogger(__name__)
SEQUENCER_LOCK = 7_240_018
SEQUENCED = Counter("coproduction_audit_sequenced_total", "Audit records sequenced into the Merkle log")
BATCH_SECONDS = Histogram("coproduction_audit_batch_seconds", "Time to sequence and sign one batch",
                          buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5))


def _now_ms() -> int:
    return time.time_ns() // 1_000_000


class Sequencer:
    def __init__(self, db: Database, key: Ed25519PrivateKey, batch: int | None = None,
                 interval: float | None = None):
        self.db = db
        self.key = key
        self.batch = batch or int(os.environ.get("AUDIT_BATCH", "1000"))
        self.interval = interval if interval is not None else int(os.environ.get("AUDIT_POLL_MS", "100")) / 1000
        self.stopping = threading.Event()
        self.ready = threading.Event()

    def sequence_once(self) -> int:
        """Sequence up to one batch of committed records and sign the new head; return how many."""
        started = time.monotonic()
        with self.db.session() as session:
            if self.db.is_postgres:
                session.execute(text("SELECT pg_advisory_xact_lock(:k)"), {"k": SEQUENCER_LOCK})
            head = latest_head(session)
            rows = session.execute(select(audit_log).where(audit_log.c.leaf_index.is_(None))
                                   .order_by(audit_log.c.id).limit(self.batch)).mappings().all()
            if not rows and head is not None:
                return 0
            size = head.tree_size if head else 0
            tree = frontier(session, size)
            nodes = []
            for row in rows:
                nodes += tree.append(leaf_hash_of(row))
            if rows:
                self._assign(session, [r["id"] for r in rows], size)
                self._store(session, nodes)
            # a head's time never goes backwards, even if the clock does
            stamp = max(_now_ms(), head.timestamp if head else 0)
            signed = TreeHead(tree.size, stamp, tree.root()).signed_with(self.key)
            session.execute(audit_tree_heads.insert().values(
                tree_size=signed.tree_size, timestamp=signed.timestamp, root_hash=signed.root_hash,
                signature=signed.signature, key_id=signed.key_id))
        if rows:
            SEQUENCED.inc(len(rows))
            BATCH_SECONDS.observe(time.monotonic() - started)
        return len(rows)

    def _assign(self, session, ids: list[int], first_leaf: int) -> None:
        """Leaf indexes first_leaf, first_leaf + 1, ... to the records ``ids``, in that order."""
        if self.db.is_postgres:  # one statement for the whole batch
            session.execute(text(
                "UPDATE audit_log SET leaf_index = v.leaf FROM (SELECT unnest(CAST(:ids AS bigint[])) AS id, "
                "unnest(CAST(:leaves AS bigint[])) AS leaf) AS v WHERE audit_log.id = v.id"),
                {"ids": ids, "leaves": list(range(first_leaf, first_leaf + len(ids)))})
        else:
            session.execute(update(audit_log).where(audit_log.c.id == bindparam("rid"))
                            .values(leaf_index=bindparam("leaf")),
                            [{"rid": rid, "leaf": first_leaf + i} for i, rid in enumerate(ids)])

    def _store(self, session, nodes: list[tuple[int, int, bytes]]) -> None:
        if self.db.is_postgres:  # one statement, however many subtrees
            levels, indexes, hashes = zip(*nodes)
            session.execute(text(
                "INSERT INTO audit_tree_nodes (level, idx, hash) SELECT * FROM unnest(CAST(:levels AS smallint[]), "
                "CAST(:indexes AS bigint[]), CAST(:hashes AS bytea[]))"),
                {"levels": list(levels), "indexes": list(indexes), "hashes": list(hashes)})
        else:
            session.execute(audit_tree_nodes.insert(), [{"level": lv, "idx": ix, "hash": h} for lv, ix, h in nodes])

    def run(self) -> None:
        log.info("audit sequencer started (batches of up to %d, polling every %.0f ms)",
                 self.batch, self.interval * 1000)
        failures = 0
        while not self.stopping.is_set():
            try:
                done = self.sequence_once()
                failures = 0
            except DB_UNAVAILABLE as exc:
                failures += 1
                log.warning("audit sequencer: database unavailable (%s); retrying", exc.__class__.__name__)
                self.stopping.wait(min(5.0, 0.2 * 2 ** min(failures, 5)))
                continue
            self.ready.set()
            if done < self.batch:  # caught up: wait for more; a full batch means more are waiting now
                self.stopping.wait(self.interval)
        log.info("audit sequencer stopped")

    def stop(self) -> None:
        self.stopping.set()
