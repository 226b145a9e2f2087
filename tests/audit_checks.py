"""Checks a person or an auditor makes of the audit log, written here from RFC 9162 and docs/audit.md
alone: nothing in it comes from the gateway's own code."""
from __future__ import annotations

import hashlib
import json
import struct

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.serialization import load_pem_public_key

#: docs/audit.md: the fields a leaf commits to (nulls left out), as canonical JSON
LEAF_KEYS = ("id", "at", "client_id", "client_name", "org", "role", "scope", "nhs_number", "action",
             "resource", "purpose", "outcome", "status", "initiative", "break_glass", "relationship")


def leaf_of(item: dict) -> bytes:
    return json.dumps({k: item[k] for k in LEAF_KEYS if item[k] is not None}, sort_keys=True,
                      separators=(",", ":"), ensure_ascii=False).encode("utf-8")


def leaf_hash(leaf: bytes) -> bytes:
    return hashlib.sha256(b"\x00" + leaf).digest()


def _node(left: bytes, right: bytes) -> bytes:
    return hashlib.sha256(b"\x01" + left + right).digest()


def inclusion_holds(leaf_index: int, tree_size: int, hash_: bytes, inclusion_path: list[bytes], root_hash: bytes) -> bool:
    """RFC 9162 §2.1.3.2, step by step."""
    if leaf_index >= tree_size:
        return False
    fn, sn = leaf_index, tree_size - 1
    r = hash_
    for p in inclusion_path:
        if sn == 0:
            return False
        if fn % 2 == 1 or fn == sn:
            r = _node(p, r)
            if fn % 2 == 0:
                while not (fn % 2 == 1 or fn == 0):
                    fn, sn = fn >> 1, sn >> 1
        else:
            r = _node(r, p)
        fn, sn = fn >> 1, sn >> 1
    return sn == 0 and r == root_hash


def consistency_holds(first: int, second: int, first_hash: bytes, second_hash: bytes, path: list[bytes]) -> bool:
    """RFC 9162 §2.1.4.2, step by step (first == second: the empty proof of equal roots)."""
    if first == second:
        return path == [] and first_hash == second_hash
    if not path:
        return False
    if first & (first - 1) == 0:
        path = [first_hash] + path
    fn, sn = first - 1, second - 1
    while fn % 2 == 1:
        fn, sn = fn >> 1, sn >> 1
    fr = sr = path[0]
    for c in path[1:]:
        if sn == 0:
            return False
        if fn % 2 == 1 or fn == sn:
            fr, sr = _node(c, fr), _node(c, sr)
            if fn % 2 == 0:
                while not (fn % 2 == 1 or fn == 0):
                    fn, sn = fn >> 1, sn >> 1
        else:
            sr = _node(sr, c)
        fn, sn = fn >> 1, sn >> 1
    return fr == first_hash and sr == second_hash and sn == 0


def head_signed(head: dict, public_key_pem: str) -> bool:
    """The Ed25519 signature over RFC 9162 §4.10 TreeHeadDataV2 (timestamp, tree_size, root, no extensions)."""
    root = bytes.fromhex(head["root_hash"])
    data = struct.pack(">QQB", head["timestamp"], head["tree_size"], len(root)) + root + b"\x00\x00"
    try:
        load_pem_public_key(public_key_pem.encode()).verify(bytes.fromhex(head["signature"]), data)
    except InvalidSignature:
        return False
    return True
