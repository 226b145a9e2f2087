"""The Merkle tree of RFC 9162 (Certificate Transparency 2.0) §2.1, with SHA-256: pure functions.

Leaves are hashed ``SHA-256(0x00 || leaf)``, interior nodes ``SHA-256(0x01 || left || right)``,
and the tree of ``n`` leaves splits at ``k``, the largest power of two smaller than ``n``.

Storage works in *perfect subtrees*: the subtree of level ``l`` and index ``i`` covers the leaves
``[i * 2**l, (i + 1) * 2**l)``. Once complete its hash never changes, so every hash a proof needs,
for any tree size, is a fold of at most ``log2(n)`` stored perfect subtrees.
"""
from __future__ import annotations

import hashlib

EMPTY_ROOT = hashlib.sha256(b"").digest()  # MTH({}) = SHA-256()


def leaf_hash(leaf: bytes) -> bytes:
    return hashlib.sha256(b"\x00" + leaf).digest()


def node_hash(left: bytes, right: bytes) -> bytes:
    return hashlib.sha256(b"\x01" + left + right).digest()


def split(n: int) -> int:
    """The largest power of two smaller than ``n`` (n >= 2)."""
    return 1 << ((n - 1).bit_length() - 1)


def root(leaf_hashes: list[bytes]) -> bytes:
    """MTH(D[n]) straight from the definition (for small lists and checks)."""
    n = len(leaf_hashes)
    if n == 0:
        return EMPTY_ROOT
    if n == 1:
        return leaf_hashes[0]
    k = split(n)
    return node_hash(root(leaf_hashes[:k]), root(leaf_hashes[k:]))


# -- ranges and the perfect subtrees that make them up ------------------------------------------------
def perfect_parts(lo: int, hi: int) -> list[tuple[int, int]]:
    """The perfect subtrees ``(level, index)`` whose fold is MTH(D[lo:hi]), largest first.

    Every range the MTH recursion produces starts at a multiple of each power of two not larger
    than itself, so taking the largest power of two that fits, again and again, lands on aligned
    subtrees."""
    parts = []
    while lo < hi:
        level = (hi - lo).bit_length() - 1
        if lo % (1 << level):
            raise ValueError(f"[{lo}, {hi}) is not a range of the tree")
        parts.append((level, lo >> level))
        lo += 1 << level
    return parts


def fold(hashes: list[bytes]) -> bytes:
    """The hash of a range from its perfect subtrees' hashes, largest first (MTH's right fold)."""
    if not hashes:
        return EMPTY_ROOT
    acc = hashes[-1]
    for h in reversed(hashes[:-1]):
        acc = node_hash(h, acc)
    return acc


def inclusion_ranges(index: int, size: int) -> list[tuple[int, int]]:
    """PATH(m, D[n]) of RFC 9162 §2.1.3.1 as the leaf ranges whose hashes it lists, leaf to root."""
    if not 0 <= index < size:
        raise ValueError(f"leaf {index} is not in a tree of {size}")
    out, lo, hi, m = [], 0, size, index
    while hi - lo > 1:
        k = split(hi - lo)
        if m < k:
            out.append((lo + k, hi))
            hi = lo + k
        else:
            out.append((lo, lo + k))
            lo, m = lo + k, m - k
    return out[::-1]


def consistency_ranges(first: int, second: int) -> list[tuple[int, int]]:
    """PROOF(m, D[n]) = SUBPROOF(m, D[n], true) of RFC 9162 §2.1.4.1, as leaf ranges, in order."""
    if not 0 < first <= second:
        raise ValueError(f"no consistency proof from {first} to {second}")
    out, lo, hi, m, whole = [], 0, second, first, True
    while m != hi - lo:
        k = split(hi - lo)
        if m <= k:
            out.append((lo + k, hi))
            hi = lo + k
        else:
            out.append((lo, lo + k))
            lo, m, whole = lo + k, m - k, False
    if not whole:
        out.append((lo, hi))
    return out[::-1]


# -- verification (RFC 9162 §2.1.3.2 and §2.1.4.2) ----------------------------------------------------
def root_from_inclusion(index: int, size: int, leaf: bytes, path: list[bytes]) -> bytes | None:
    """The root an inclusion proof leads to from a leaf hash, or None if the proof has the wrong shape."""
    if not 0 <= index < size:
        return None
    fn, sn, r = index, size - 1, leaf
    for p in path:
        if sn == 0:
            return None
        if fn & 1 or fn == sn:
            r = node_hash(p, r)
            if not fn & 1:
                while fn & 1 == 0 and fn != 0:
                    fn >>= 1
                    sn >>= 1
        else:
            r = node_hash(r, p)
        fn >>= 1
        sn >>= 1
    return r if sn == 0 else None


def verify_inclusion(index: int, size: int, leaf: bytes, path: list[bytes], root_hash: bytes) -> bool:
    return root_from_inclusion(index, size, leaf, path) == root_hash


def verify_consistency(first: int, second: int, first_root: bytes, second_root: bytes,
                       proof: list[bytes]) -> bool:
    if not 0 < first <= second:
        return False
    if first == second:
        return not proof and first_root == second_root
    if not proof:
        return False
    if first & (first - 1) == 0:  # a power of two: the first tree is a subtree, its root starts the proof
        proof = [first_root, *proof]
    fn, sn = first - 1, second - 1
    while fn & 1:
        fn >>= 1
        sn >>= 1
    fr = sr = proof[0]
    for c in proof[1:]:
        if sn == 0:
            return False
        if fn & 1 or fn == sn:
            fr, sr = node_hash(c, fr), node_hash(c, sr)
            if not fn & 1:
                while fn & 1 == 0 and fn != 0:
                    fn >>= 1
                    sn >>= 1
        else:
            sr = node_hash(sr, c)
        fn >>= 1
        sn >>= 1
    return sn == 0 and fr == first_root and sr == second_root


# -- appending: the compact range (the right edge of the tree) ---------------------------------------
class CompactRange:
    """The perfect subtrees of ``[0, size)``, largest first: enough to append leaves and to give the
    root, in O(log n) memory. ``append`` returns every perfect subtree it completes, to be stored."""

    def __init__(self, size: int = 0, hashes: list[bytes] | None = None):
        self.size = size
        self.hashes = list(hashes or [])
        if len(self.hashes) != len(perfect_parts(0, size)):
            raise ValueError(f"a compact range of {size} leaves has {len(perfect_parts(0, size))} hashes")

    def append(self, leaf: bytes) -> list[tuple[int, int, bytes]]:
        index = self.size
        made = [(0, index, leaf)]
        self.hashes.append(leaf)
        level = 0
        while (index >> level) & 1:  # the subtree just finished has a finished left sibling: merge
            right = self.hashes.pop()
            left = self.hashes.pop()
            level += 1
            merged = node_hash(left, right)
            self.hashes.append(merged)
            made.append((level, index >> level, merged))
        self.size += 1
        return made

    def root(self) -> bytes:
        return fold(self.hashes)
