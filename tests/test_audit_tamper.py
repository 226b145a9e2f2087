"""Issue 18: tampering with the audit log is found, and `audit verify` names the first bad leaf.

The attacker here is as strong as it gets short of the witness's own file: it writes the gateway's
database as it likes, recomputes every stored hash afterwards and even re-signs every tree head with
the real signing key. The database then agrees with itself, so `audit verify` alone passes; checked
against a witness's file, the same command finds each case and names the first bad leaf.
"""
from __future__ import annotations

import subprocess
import sys

import pytest
from sqlalchemy import delete, func, select, update

from coproduction.auth import Caller
from harness import ROOT, wait_for

NHS = "9434765919"
WHO = Caller("c1", "Ward 7", "RX1", "hospital", ("portfolio:read",), "direct care")
ROUNDS = (15, 12, 10)  # records per round; the witness runs after each


def cli(platform, *argv):
    return subprocess.run([sys.executable, "-m", "bootstrap.cli", *argv], env=dict(platform.env), cwd=ROOT,
                          capture_output=True, text=True, timeout=120)


def add_records(db, n: int, tag: str) -> None:
    from gateway import audit
    with db.session() as s:
        for i in range(n):
            audit.record(s, caller=WHO, scope="portfolio:read", nhs_number=NHS, action="GET",
                         resource=f"/v1/people/{NHS}/portfolio?{tag}={i}", purpose="direct care", status=200)


def all_sequenced(db) -> bool:
    from gateway.models import audit_log, audit_tree_heads
    with db.session() as s:
        waiting = s.execute(select(func.count()).select_from(audit_log).where(audit_log.c.leaf_index.is_(None))).scalar_one()
        total = s.execute(select(func.count()).select_from(audit_log)).scalar_one()
        size = s.execute(select(func.max(audit_tree_heads.c.tree_size))).scalar_one()
    return waiting == 0 and size == total


def rebuild_everything(db) -> None:
    """The attacker's clean-up: every leaf hash, subtree and head recomputed from the records as they
    now are, each head re-signed with the real key; heads past the new end dropped, one added there."""
    from gateway import audit
    from gateway.audit import keys as audit_keys, merkle
    from gateway.audit.keys import TreeHead
    from gateway.models import audit_log, audit_tree_heads, audit_tree_nodes
    key = audit_keys.signing_key()
    with db.session() as s:
        rows = s.execute(select(audit_log).where(audit_log.c.leaf_index.isnot(None))
                         .order_by(audit_log.c.leaf_index)).mappings().all()
        old = s.execute(select(audit_tree_heads.c.tree_size, audit_tree_heads.c.timestamp)).all()
        s.execute(delete(audit_tree_nodes))
        s.execute(delete(audit_tree_heads))
        stamps = {size: stamp for size, stamp in old if size <= len(rows)}
        stamps.setdefault(len(rows), max(stamp for _size, stamp in old))
        tree, nodes = merkle.CompactRange(), []
        for row in rows:
            nodes += tree.append(audit.leaf_hash_of(row))
            if tree.size in stamps:
                head = TreeHead(tree.size, stamps[tree.size], tree.root()).signed_with(key)
                s.execute(audit_tree_heads.insert().values(tree_size=head.tree_size, timestamp=head.timestamp,
                                                           root_hash=head.root_hash, signature=head.signature,
                                                           key_id=head.key_id))
        s.execute(audit_tree_nodes.insert(), [{"level": lv, "idx": ix, "hash": h} for lv, ix, h in nodes])


def move_leaves(s, at_or_after: int, by: int) -> None:
    """Shift leaf indexes (in two steps: the unique index holds at every statement)."""
    from gateway.models import audit_log
    s.execute(update(audit_log).where(audit_log.c.leaf_index >= at_or_after)
              .values(leaf_index=audit_log.c.leaf_index + 1_000_000))
    s.execute(update(audit_log).where(audit_log.c.leaf_index >= 1_000_000)
              .values(leaf_index=audit_log.c.leaf_index - 1_000_000 + by))


def tamper(db, kind: str, total: int) -> int:
    """Do it; return the first leaf that is no longer what was witnessed."""
    from gateway import audit
    from gateway.models import audit_log
    leaf = audit_log.c.leaf_index
    with db.session() as s:
        if kind == "truncate":  # the newest 4 records removed
            s.execute(delete(audit_log).where(leaf >= total - 4))
            bad = total - 4
        elif kind == "rewrite":  # one record's purpose changed
            s.execute(update(audit_log).where(leaf == 7).values(purpose="curiosity"))
            bad = 7
        elif kind == "insert":  # a record slipped in at leaf 20
            move_leaves(s, 20, 1)
            new_id = audit.record(s, caller=WHO, scope="portfolio:read", nhs_number=NHS, action="GET",
                                  resource="/v1/people/alibi", purpose="direct care", status=200)
            s.execute(update(audit_log).where(audit_log.c.id == new_id).values(leaf_index=20))
            bad = 20
        elif kind == "swap":  # two records' order exchanged
            s.execute(update(audit_log).where(leaf == 9).values(leaf_index=-1))
            s.execute(update(audit_log).where(leaf == 30).values(leaf_index=9))
            s.execute(update(audit_log).where(leaf == -1).values(leaf_index=30))
            bad = 9
    rebuild_everything(db)
    return bad


@pytest.fixture
def witnessed_log(make_platform, tmp_path):
    """A log of three sequenced rounds, witnessed after each (the witness keeps leaf hashes unless
    the test asks for heads only)."""
    from gateway.audit import witness as audit_witness

    def make(heads_only: bool = False):
        platform = make_platform(services=())
        platform.migrate()
        db = platform.database("gateway")
        platform.start_sequencer(interval=0.02)
        state = tmp_path / "witness.json"
        for n, tag in zip(ROUNDS, "abc"):
            add_records(db, n, tag)
            wait_for(lambda: all_sequenced(db), message="the round sequenced")
            witness = audit_witness.WitnessState.load(state)  # what `audit witness --state` does, in-process
            witness.keeps_leaves = witness.keeps_leaves and not heads_only
            assert "witnessed the log at" in audit_witness.witness(witness, audit_witness.DatabaseSource(db))
        platform.stop_thread("gateway-sequencer")
        verify = cli(platform, "audit", "verify", "--witness", str(state))
        assert verify.returncode == 0, verify.stdout + verify.stderr
        return platform, db, state
    return make


@pytest.mark.parametrize("kind", ["truncate", "rewrite", "insert", "swap"])
def test_tampering_is_found_against_the_witness_and_the_first_bad_leaf_named(witnessed_log, kind):
    platform, db, state = witnessed_log()
    bad = tamper(db, kind, sum(ROUNDS))

    alone = cli(platform, "audit", "verify")
    assert alone.returncode == 0, alone.stdout  # the database agrees with itself: only a witness can tell
    found = cli(platform, "audit", "verify", "--witness", str(state))
    assert found.returncode == 1, found.stdout + found.stderr
    assert f"first bad leaf: {bad}\n" in found.stdout, found.stdout
    assert "audit log BROKEN" in found.stdout
    refused = cli(platform, "audit", "witness", "--state", str(state))
    assert refused.returncode == 1, refused.stdout + refused.stderr
    assert ("ROLLBACK" if kind == "truncate" else "FORK") in refused.stderr, refused.stderr
    assert cli(platform, "audit", "verify", "--witness", str(state)).returncode == 1  # the witness kept its record


def test_a_heads_only_witness_localises_the_first_bad_leaf_between_two_heads(witnessed_log):
    platform, db, state = witnessed_log(heads_only=True)
    assert not (state.parent / (state.name + ".leaves")).exists()  # 0 bytes a record
    bad = tamper(db, "rewrite", sum(ROUNDS))
    found = cli(platform, "audit", "verify", "--witness", str(state))
    assert found.returncode == 1, found.stdout
    assert f"first bad leaf: between 0 and {ROUNDS[0] - 1}" in found.stdout and bad < ROUNDS[0], found.stdout


def test_edits_that_leave_the_stored_hashes_alone_are_named_without_a_witness(witnessed_log):
    from gateway.models import audit_log, audit_tree_heads
    platform, db, _state = witnessed_log()
    with db.session() as s:
        s.execute(update(audit_log).where(audit_log.c.leaf_index == 3).values(status=403))
        s.execute(update(audit_tree_heads).where(audit_tree_heads.c.tree_size == ROUNDS[0])
                  .values(signature=b"\x00" * 64))
    found = cli(platform, "audit", "verify")
    assert found.returncode == 1
    assert "leaf 3 (record id" in found.stdout and "first bad leaf: 3\n" in found.stdout, found.stdout
    assert f"the stored tree head of size {ROUNDS[0]} is not signed" in found.stdout
