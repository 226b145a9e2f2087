"""Issue 18: the Merkle math of gateway/audit/merkle.py against published vectors, and as properties.

The reference here is RFC 9162 §2.1 written out naively (MTH, PATH, PROOF by their recursive
definitions); the vectors are the Certificate Transparency reference implementation's.
"""
from __future__ import annotations

import hashlib

import pytest
from hypothesis import given, settings, strategies as st

from gateway.audit import merkle

# the CT reference implementation's test leaves, and the roots of their first n
LEAVES = [bytes.fromhex(h) for h in ("", "00", "10", "2021", "3031", "40414243", "5051525354555657",
                                     "606162636465666768696a6b6c6d6e6f")]
ROOTS = ["6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d",
         "fac54203e7cc696cf0dfcb42c92a1d9dbaf70ad9e621f4bd8d98662f00e3c125",
         "aeb6bcfe274b70a14fb067a5e5578264db0fa9b51af5e0ba159158f329e06e77",
         "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7",
         "4e3bbb1f7b478dcfe71fb631631519a3bca12c9aefca1612bfce4c13a86264d4",
         "76e67dadbcdf1e10e1b74ddc608abd2f98dfb16fbce75277b5232a127f2087ef",
         "ddb89be403809e325750d3d263cd78929c2942b7942a34b77e122c9594a74c8c",
         "5dc9da79a70659a9ad559cb701ded9a2ab9d823aad2f4960cfe370eff4604328"]
PATH_0_OF_7 = ["96a296d224f285c67bee93c30f8a309157f0daa35dc5b87e410b78630a09cfc7",
               "5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e",
               "837dbb152e9b079010717e84e865da4ebc0fa198a806d59d31bf15accef22d0e"]
CONSISTENCY = {
    (1, 8): ["96a296d224f285c67bee93c30f8a309157f0daa35dc5b87e410b78630a09cfc7",
             "5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e",
             "6b47aaf29ee3c2af9af889bc1fb9254dabd31177f16232dd6aab035ca39bf6e4"],
    (6, 8): ["0ebc5d3437fbe2db158b9f126a1d118e308181031d0a949f8dededebc558ef6a",
             "ca854ea128ed050b41b35ffc1b87b8eb2bde461e9e3b5596ece6b9d5975a0ae0",
             "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7"],
    (2, 5): ["5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e",
             "bc1a0643b12e4d2d7c77918f44e0f4f79a838b6cf9ec5b5c283e1f4d88599e6b"],
}


# -- RFC 9162 §2.1 by its definitions ------------------------------------------------------------
def mth(d: list[bytes]) -> bytes:
    n = len(d)
    if n == 0:
        return hashlib.sha256(b"").digest()
    if n == 1:
        return hashlib.sha256(b"\x00" + d[0]).digest()
    k = 1
    while k * 2 < n:
        k *= 2
    return hashlib.sha256(b"\x01" + mth(d[:k]) + mth(d[k:])).digest()


def path(m: int, d: list[bytes]) -> list[bytes]:
    if len(d) == 1:
        return []
    k = 1
    while k * 2 < len(d):
        k *= 2
    return path(m, d[:k]) + [mth(d[k:])] if m < k else path(m - k, d[k:]) + [mth(d[:k])]


def subproof(m: int, d: list[bytes], b: bool) -> list[bytes]:
    n = len(d)
    if m == n:
        return [] if b else [mth(d)]
    k = 1
    while k * 2 < n:
        k *= 2
    if m <= k:
        return subproof(m, d[:k], b) + [mth(d[k:])]
    return subproof(m - k, d[k:], False) + [mth(d[:k])]


def ours(ranges, d: list[bytes]) -> list[bytes]:
    """A proof from our module's ranges, each hashed from the leaves by the definition."""
    return [mth(d[lo:hi]) for lo, hi in ranges]


def leaves(n: int) -> list[bytes]:
    return [i.to_bytes(4, "big") * (i % 3 + 1) for i in range(n)]


# -- known vectors ----------------------------------------------------------------------------------
@pytest.mark.parametrize("n", range(1, 9))
def test_roots_match_the_reference_implementation(n):
    hashes = [merkle.leaf_hash(x) for x in LEAVES[:n]]
    assert merkle.root(hashes).hex() == ROOTS[n - 1]
    tree = merkle.CompactRange()
    for h in hashes:
        tree.append(h)
    assert tree.root().hex() == ROOTS[n - 1]
    assert merkle.fold([merkle.root(hashes[lo:hi]) for lo, hi in
                        [((i << lv), ((i + 1) << lv)) for lv, i in merkle.perfect_parts(0, n)]]).hex() == ROOTS[n - 1]


def test_the_empty_tree_is_the_hash_of_nothing():
    assert merkle.root([]) == merkle.CompactRange().root() == hashlib.sha256(b"").digest()


def test_the_inclusion_path_of_leaf_0_in_7_is_the_published_one():
    assert [h.hex() for h in ours(merkle.inclusion_ranges(0, 7), LEAVES)] == PATH_0_OF_7
    root = bytes.fromhex(ROOTS[6])
    assert merkle.verify_inclusion(0, 7, merkle.leaf_hash(LEAVES[0]), [bytes.fromhex(h) for h in PATH_0_OF_7], root)


@pytest.mark.parametrize("first,second", list(CONSISTENCY))
def test_consistency_proofs_are_the_published_ones(first, second):
    proof = ours(merkle.consistency_ranges(first, second), LEAVES)
    assert [h.hex() for h in proof] == CONSISTENCY[(first, second)]
    assert merkle.verify_consistency(first, second, bytes.fromhex(ROOTS[first - 1]), bytes.fromhex(ROOTS[second - 1]),
                                     proof)
    assert not merkle.verify_consistency(first, second, bytes.fromhex(ROOTS[first - 1]),
                                         bytes.fromhex(ROOTS[second - 2]), proof)


def test_ranges_out_of_the_tree_are_refused():
    for bad in ((5, 5), (-1, 3)):
        with pytest.raises(ValueError):
            merkle.inclusion_ranges(*bad)
    for bad in ((0, 3), (4, 3)):
        with pytest.raises(ValueError):
            merkle.consistency_ranges(*bad)
    with pytest.raises(ValueError):
        merkle.perfect_parts(1, 3)  # [1, 3) is no subtree MTH ever folds
    assert not merkle.verify_inclusion(3, 3, b"x" * 32, [], b"x" * 32)
    assert not merkle.verify_consistency(3, 2, b"", b"", [])


# -- properties -------------------------------------------------------------------------------------
sizes = st.integers(min_value=1, max_value=300)


@settings(max_examples=200, deadline=None)
@given(data=st.data(), n=sizes)
def test_every_inclusion_proof_is_rfc_path_and_verifies(data, n):
    d = leaves(n)
    m = data.draw(st.integers(min_value=0, max_value=n - 1))
    proof = ours(merkle.inclusion_ranges(m, n), d)
    assert proof == path(m, d)
    leaf = merkle.leaf_hash(d[m])
    assert merkle.verify_inclusion(m, n, leaf, proof, mth(d))
    assert not merkle.verify_inclusion(m, n, merkle.leaf_hash(d[m] + b"!"), proof, mth(d))
    if proof:
        assert not merkle.verify_inclusion(m, n, leaf, proof[:-1], mth(d))
        bent = list(proof)
        bent[data.draw(st.integers(min_value=0, max_value=len(proof) - 1))] = b"\x00" * 32
        assert not merkle.verify_inclusion(m, n, leaf, bent, mth(d))
    if n > 1:  # the same proof does not place the leaf anywhere else
        assert not merkle.verify_inclusion((m + 1) % n, n, leaf, proof, mth(d))


@settings(max_examples=200, deadline=None)
@given(data=st.data(), n=sizes)
def test_every_consistency_proof_is_rfc_proof_and_verifies(data, n):
    d = leaves(n)
    m = data.draw(st.integers(min_value=1, max_value=n))
    proof = [] if m == n else ours(merkle.consistency_ranges(m, n), d)
    assert proof == subproof(m, d, True)
    assert merkle.verify_consistency(m, n, mth(d[:m]), mth(d), proof)
    if m < n:
        other = d[:m - 1] + [b"forged"] + d[m:]
        assert not merkle.verify_consistency(m, n, mth(other[:m]), mth(d), proof)
        assert not merkle.verify_consistency(m, n, mth(d[:m]), mth(other), proof)
        assert not merkle.verify_consistency(m, n, mth(d[:m]), mth(d), proof[:-1])


@settings(max_examples=100, deadline=None)
@given(n=st.integers(min_value=0, max_value=600))
def test_appending_stores_each_perfect_subtree_once_and_keeps_the_root(n):
    d = leaves(n)
    tree, made = merkle.CompactRange(), {}
    for leaf in d:
        for level, index, h in tree.append(merkle.leaf_hash(leaf)):
            assert (level, index) not in made
            made[(level, index)] = h
    assert tree.root() == mth(d) and tree.size == n
    assert len(made) == sum(n >> level for level in range(n.bit_length() + 1))
    for (level, index), h in made.items():
        assert h == mth(d[index << level:(index + 1) << level])
    # a tree rebuilt from its stored right edge goes on exactly as the one that never stopped
    resumed = merkle.CompactRange(n, [made[p] for p in merkle.perfect_parts(0, n)])
    resumed.append(merkle.leaf_hash(b"next"))
    tree.append(merkle.leaf_hash(b"next"))
    assert resumed.root() == tree.root() == mth(d + [b"next"])


@settings(max_examples=200, deadline=None)
@given(data=st.data(), n=sizes)
def test_every_range_a_proof_needs_folds_from_stored_perfect_subtrees(data, n):
    """What gateway/audit/tree.py does with the stored subtrees gives the hash the definition gives."""
    d = leaves(n)
    m = data.draw(st.integers(min_value=1, max_value=n))
    ranges = merkle.inclusion_ranges(m - 1, n) + (merkle.consistency_ranges(m, n) if m < n else [])
    for lo, hi in ranges + [(0, n), (m - 1, m)]:
        parts = merkle.perfect_parts(lo, hi)
        assert len(parts) <= n.bit_length()
        assert merkle.fold([mth(d[i << level:(i + 1) << level]) for level, i in parts]) == mth(d[lo:hi])
