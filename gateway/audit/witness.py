"""``coproduction audit witness``: keep the log's signed heads, and its leaf hashes, outside its database.

Each run fetches the latest signed tree head, checks its signature with the key pinned on the first
run, checks that it extends the last witnessed head (an RFC 9162 consistency proof), and refuses,
changing nothing, on a rollback or a fork. By default it also keeps every leaf hash (32 bytes a
record, in ``STATE.leaves``) and rebuilds the signed root from them, as a Certificate Transparency
monitor does: then ``audit verify --witness`` can name the exact first leaf that changed even when
an attacker recomputed every hash in the database. ``--heads-only`` keeps just the heads: tampering
is still detected, but only localised to between two witnessed heads.

The log is read over HTTP (``--url`` and a token with ``audit:read``; leaf hashes carry no personal
data) or, without ``--url``, straight from the gateway's database.
"""
from __future__ import annotations

import json
import os
import time
from dataclasses import dataclass, field
from pathlib import Path

import requests

from . import keys, merkle
from .keys import TreeHead
from .tree import consistency_proof, latest_head, leaf_hashes


class Refused(Exception):
    """The log is not a consistent extension of what was witnessed: nothing was recorded."""


# -- where the log is read from ---------------------------------------------------------------------
class DatabaseSource:
    def __init__(self, db):
        self.db = db

    def public_key(self):
        return keys.public_key()

    def latest_head(self) -> TreeHead | None:
        with self.db.session() as s:
            return latest_head(s)

    def consistency(self, first: int, second: int) -> list[bytes]:
        with self.db.session() as s:
            proof = consistency_proof(s, first, second)
        return [bytes.fromhex(h) for h in proof["consistency_path"]]

    def leaf_hashes(self, start: int, end: int) -> list[bytes]:
        with self.db.session() as s:
            return leaf_hashes(s, start, end)


class HttpSource:
    def __init__(self, url: str, token: str | None):
        self.url = url.rstrip("/")
        self.http = requests.Session()
        if token:
            self.http.headers["Authorization"] = f"Bearer {token}"

    def _get(self, path: str, **params) -> dict:
        for _attempt in range(10):  # a witness catching up pages through many leaves: wait out a rate limit
            r = self.http.get(self.url + path, params=params, timeout=30)
            if r.status_code not in (429, 503):
                break
            retry_after = r.headers.get("Retry-After", "1")
            time.sleep(min(30.0, float(retry_after)) if retry_after.isdigit() else 1.0)
        if r.status_code == 404 and path.endswith("tree-head"):
            return {}
        if r.status_code != 200:
            raise Refused(f"GET {path} answered {r.status_code}: {r.text[:300]}")
        return r.json()

    def public_key(self):
        return keys.load_public(self._get("/v1/audit/public-key")["pem"], "the gateway's public key")

    def latest_head(self) -> TreeHead | None:
        data = self._get("/v1/audit/tree-head")
        return TreeHead.from_json(data) if data else None

    def consistency(self, first: int, second: int) -> list[bytes]:
        data = self._get("/v1/audit/proof/consistency", first=first, second=second)
        return [bytes.fromhex(h) for h in data["consistency_path"]]

    def leaf_hashes(self, start: int, end: int) -> list[bytes]:
        out = []
        while start < end:
            stop = min(end, start + 1000)
            out += [bytes.fromhex(h) for h in self._get("/v1/audit/leaf-hashes", start=start, end=stop)["leaf_hashes"]]
            start = stop
        return out


# -- the witness's own record ------------------------------------------------------------------------
@dataclass
class WitnessState:
    path: Path
    public_pem: str | None = None
    keeps_leaves: bool = True
    heads: list[TreeHead] = field(default_factory=list)
    compact: list[bytes] = field(default_factory=list)

    @property
    def leaves_path(self) -> Path:
        return self.path.with_name(self.path.name + ".leaves")

    @property
    def size(self) -> int:
        return self.heads[-1].tree_size if self.heads else 0

    @classmethod
    def load(cls, path: Path) -> "WitnessState":
        if not path.exists():
            return cls(path)
        data = json.loads(path.read_text())
        return cls(path, data["public_key"], data["keeps_leaves"], [TreeHead.from_json(h) for h in data["heads"]],
                   [bytes.fromhex(h) for h in data.get("compact_range", [])])

    def public_key(self):
        return keys.load_public(self.public_pem, f"the key pinned in {self.path}") if self.public_pem else None

    def leaf_hashes(self) -> list[bytes] | None:
        """Every leaf hash witnessed, or None for a heads-only witness."""
        if not self.keeps_leaves:
            return None
        data = self.leaves_path.read_bytes() if self.leaves_path.exists() else b""
        if len(data) < 32 * self.size:
            raise Refused(f"{self.leaves_path} holds {len(data) // 32} leaf hashes; the witness saw {self.size}")
        return [data[i:i + 32] for i in range(0, 32 * self.size, 32)]

    def save(self, new_leaves: list[bytes]) -> None:
        """Leaves first (cut back to what the state file vouches for, then appended), then the state
        file, replaced in one rename: a crash in between leaves extra leaves that the next run cuts."""
        if self.keeps_leaves:
            old_size = self.size - len(new_leaves)
            with open(self.leaves_path, "ab") as f:
                f.truncate(32 * old_size)
                f.write(b"".join(new_leaves))
                f.flush()
                os.fsync(f.fileno())
        data = {"format": 1, "public_key": self.public_pem, "keeps_leaves": self.keeps_leaves,
                "heads": [h.to_json() for h in self.heads], "compact_range": [h.hex() for h in self.compact]}
        tmp = self.path.with_name(self.path.name + ".tmp")
        tmp.write_text(json.dumps(data, indent=1))
        with open(tmp, "rb") as f:
            os.fsync(f.fileno())
        tmp.replace(self.path)


def witness(state: WitnessState, source, pinned_pem: str | None = None) -> str:
    """Check the source's latest head against what was witnessed; record it. Raises Refused."""
    if state.public_pem is None:  # first run: pin the key given, or trust the one the log publishes
        state.public_pem = pinned_pem or keys.public_pem(source.public_key())
    elif pinned_pem and keys.load_public(pinned_pem).public_bytes_raw() != state.public_key().public_bytes_raw():
        raise Refused(f"the key given is not the key pinned in {state.path}")
    key = state.public_key()
    head = source.latest_head()
    if head is None:
        raise Refused("the log has no signed tree head yet")
    if not head.valid_for(key):
        raise Refused(f"the tree head of size {head.tree_size} is not signed by the witnessed key "
                      f"{keys.key_id(key)[:16]}… (its key id: {head.key_id[:16]}…)")
    last = state.heads[-1] if state.heads else None
    if last is not None:
        if head.tree_size < last.tree_size:
            raise Refused(f"ROLLBACK: the log's signed head has {head.tree_size} records; the witness saw "
                          f"{last.tree_size} (root {last.root_hash.hex()[:16]}…)")
        if head.timestamp < last.timestamp:
            raise Refused(f"the log's head is older ({head.timestamp}) than the witnessed one ({last.timestamp})")
        if head.tree_size == last.tree_size:
            if head.root_hash != last.root_hash:
                raise Refused(f"FORK: two signed roots for {head.tree_size} records: witnessed "
                              f"{last.root_hash.hex()[:16]}…, now {head.root_hash.hex()[:16]}…")
            return f"no new records: the log is still at {head.tree_size} (root {head.root_hash.hex()[:16]}…)"
        if last.tree_size > 0:
            proof = source.consistency(last.tree_size, head.tree_size)
            if not merkle.verify_consistency(last.tree_size, head.tree_size, last.root_hash, head.root_hash, proof):
                raise Refused(f"FORK: the log's head of {head.tree_size} records does not extend the witnessed "
                              f"head of {last.tree_size} (the consistency proof fails)")
    new_leaves = []
    if state.keeps_leaves:
        tree = merkle.CompactRange(state.size, state.compact)
        new_leaves = source.leaf_hashes(state.size, head.tree_size)
        for leaf in new_leaves:
            tree.append(leaf)
        if tree.root() != head.root_hash:
            raise Refused(f"the leaf hashes the log serves for {state.size}..{head.tree_size - 1} do not build "
                          f"its signed root for {head.tree_size}")
        state.compact = tree.hashes
    previous = state.size
    state.heads.append(head)
    state.save(new_leaves)
    return (f"witnessed the log at {head.tree_size} records (root {head.root_hash.hex()[:16]}…), "
            f"consistent with the {previous} witnessed before")
