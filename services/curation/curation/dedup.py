"""Exact and near-duplicate detection: MinHash signatures and LSH bands, computed in bulk.

The MinHash scheme is datasketch's "affine32" (murmur3 finaliser, then `a*h + b mod 2^32`) with
datasketch's own permutations for the seed, and the bands are the (b, r) that datasketch's
MinHashLSH picks for the threshold; unit tests check signatures bit for bit against
`datasketch.MinHash` and candidates against `MinHashLSH.query`. What differs from the textbook
loop is how the work is done:

- shingle hashes for the whole corpus come from one vocabulary (each distinct word hashed once)
  and numpy arithmetic, not a sha1 call per shingle;
- signatures are vectorised permutations and `np.minimum.reduceat` over chunks of documents;
- bands are grouped by sorting band keys, not by inserting into and querying dicts per doc;
- every LSH candidate is verified with the exact Jaccard of the two shingle sets, so a pair
  below the threshold is never called a duplicate (LSH alone admits such pairs).

Shingles default to single words (a document's word set). At the thresholds specs use
(0.8-0.9), a k-word shingle turns one edited word into up to k changed shingles: the bigram
Jaccard of a 60-word ticket with three edited words is about 0.82, so the threshold would only
catch near-verbatim copies. `bench/dedup.py --shingle 2` shows the trade-off.

Order decides which of two duplicates stays: the earlier document is kept, and a document is
only a duplicate of one that is itself kept, as in the streaming insert/query loop.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass
from functools import lru_cache
from itertools import chain, pairwise

import numpy as np

_MASK64 = (1 << 64) - 1
_SHINGLE_MULT = 0x9E3779B97F4A7C15  # odd 64-bit constant; chains word hashes into a shingle
_BAND_MULT = np.uint64(0xC2B2AE3D27D4EB4F)
_MAX_PAIRS_PER_BUCKET = 64
_CHUNK_SHINGLES = 1 << 20  # per signature chunk: 4 MiB of uint32 per working array


@dataclass(frozen=True)
class MinHashParams:
    threshold: float
    num_perm: int = 128
    shingle_words: int = 1
    seed: int = 1


@dataclass(frozen=True)
class Duplicate:
    kept: int
    similarity: float


def exact_duplicates(keys: Sequence[str], protected: int = 0) -> dict[int, int]:
    """index -> index of the first row with the same key; the first `protected` are kept."""
    first: dict[str, int] = {}
    out: dict[int, int] = {}
    for i, key in enumerate(keys):
        if key in first and i >= protected:
            out[i] = first[key]
        else:
            first.setdefault(key, i)
    return out


@lru_cache(maxsize=16)
def permutations(num_perm: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    from datasketch import MinHash

    a, b = MinHash(num_perm=num_perm, seed=seed, scheme="affine32").permutations
    return a.astype(np.uint32), b.astype(np.uint32)


@lru_cache(maxsize=16)
def bands(threshold: float, num_perm: int) -> tuple[int, int]:
    """(b, r) as datasketch's MinHashLSH optimises them (equal false-positive/negative weight)."""
    from datasketch import MinHashLSH

    lsh = MinHashLSH(threshold=threshold, num_perm=num_perm)
    return lsh.b, lsh.r


def _word_hash(word: str) -> int:
    return int.from_bytes(hashlib.blake2b(word.encode(), digest_size=8).digest(), "little")


def _fold(h: np.ndarray) -> np.ndarray:
    return ((h >> np.uint64(32)) ^ (h & np.uint64(0xFFFFFFFF))).astype(np.uint32)


def shingle_hashes(docs: Sequence[Sequence[str]], k: int) -> tuple[np.ndarray, np.ndarray]:
    """Each doc's distinct word k-gram hashes, sorted (a doc shorter than k is one shingle).

    Returns (hashes, offsets): doc i owns hashes[offsets[i]:offsets[i + 1]].
    """
    every = list(chain.from_iterable(docs))
    # Each distinct word is hashed once; the per-token work is one C-level dict lookup.
    table = {w: _word_hash(w) for w in dict.fromkeys(every)}
    words = np.fromiter(map(table.__getitem__, every), dtype=np.uint64, count=len(every))
    lengths = np.fromiter(map(len, docs), dtype=np.int64, count=len(docs))
    starts = np.cumsum(lengths) - lengths

    chained = words.copy()
    for j in range(1, k):
        shifted = np.zeros_like(words)
        shifted[: len(words) - j] = words[j:]
        chained = chained * np.uint64(_SHINGLE_MULT) + shifted
    long_docs = lengths >= k
    position = np.arange(len(words)) - np.repeat(starts, lengths)
    valid = position <= np.repeat(lengths - k, lengths)
    counts = np.where(long_docs, lengths - k + 1, np.minimum(lengths, 1))
    owner = np.repeat(np.arange(len(docs)), counts)
    out = np.empty(len(owner), dtype=np.uint32)
    offsets = np.concatenate([[0], np.cumsum(counts)]).astype(np.int64)
    out[np.repeat(long_docs, counts)] = _fold(chained[valid])
    for d in np.flatnonzero(~long_docs & (lengths > 0)):
        h = 0
        for w in words[starts[d] : starts[d] + lengths[d]].tolist():
            h = (h * _SHINGLE_MULT + w) & _MASK64
        out[offsets[d]] = _fold(np.array([h], dtype=np.uint64))[0]

    # A set, not a bag: repeated shingles change neither MinHash nor Jaccard, only the work.
    key = (owner.astype(np.uint64) << np.uint64(32)) | out.astype(np.uint64)
    key.sort()
    key = key[np.concatenate([[True], key[1:] != key[:-1]])] if len(key) else key
    owner, out = (key >> np.uint64(32)).astype(np.int64), _fold_low(key)
    offsets = np.searchsorted(owner, np.arange(len(docs) + 1), side="left").astype(np.int64)
    return out, offsets


def _fold_low(key: np.ndarray) -> np.ndarray:
    return (key & np.uint64(0xFFFFFFFF)).astype(np.uint32)


def _fmix32(h: np.ndarray) -> np.ndarray:
    h = h ^ (h >> np.uint32(16))
    h = h * np.uint32(0x85EBCA6B)
    h = h ^ (h >> np.uint32(13))
    h = h * np.uint32(0xC2B2AE35)
    return h ^ (h >> np.uint32(16))


def signatures(hashes: np.ndarray, offsets: np.ndarray, num_perm: int, seed: int) -> np.ndarray:
    """(docs, num_perm) uint32 MinHash signatures; an empty doc keeps all-max values.

    Permutation-major: one contiguous pass over a chunk's shingles per permutation, reduced per
    doc with `np.minimum.reduceat`. Three times faster than permuting a (shingles x perms)
    block at once, which streams far more memory than the caches hold.
    """
    a, b = permutations(num_perm, seed)
    n_docs = len(offsets) - 1
    sig = np.full((num_perm, n_docs), np.iinfo(np.uint32).max, dtype=np.uint32)
    mixed = _fmix32(hashes.astype(np.uint32))
    first = 0
    while first < n_docs:
        # Grow the chunk doc by doc until it holds about _CHUNK_SHINGLES shingles.
        last = int(np.searchsorted(offsets, offsets[first] + _CHUNK_SHINGLES, side="right")) - 1
        last = min(max(last, first + 1), n_docs)
        docs = np.arange(first, last)
        nonempty = docs[offsets[docs + 1] > offsets[docs]]
        if len(nonempty):
            chunk = mixed[offsets[first] : offsets[last]]
            starts = offsets[nonempty] - offsets[first]
            buf = np.empty_like(chunk)
            for p in range(num_perm):
                np.multiply(chunk, a[p], out=buf)
                np.add(buf, b[p], out=buf)
                sig[p, nonempty] = np.minimum.reduceat(buf, starts)
        first = last
    return np.ascontiguousarray(sig.T)


def candidate_pairs(sig: np.ndarray, b: int, r: int, eligible: np.ndarray) -> set[tuple[int, int]]:
    """Pairs (i < j) that share at least one band, as MinHashLSH buckets them."""
    pairs: set[tuple[int, int]] = set()
    rows = np.flatnonzero(eligible)
    if len(rows) < 2:
        return pairs
    for band in range(b):
        block = sig[rows, band * r : (band + 1) * r].astype(np.uint64)
        key = np.zeros(len(rows), dtype=np.uint64)
        for col in range(r):
            key = key * _BAND_MULT + block[:, col]
        order = np.argsort(key, kind="stable")
        ordered = key[order]
        starts = np.flatnonzero(np.concatenate([[True], ordered[1:] != ordered[:-1]]))
        sizes = np.diff(np.append(starts, len(ordered)))
        shared = sizes > 1
        for start, size in zip(starts[shared].tolist(), sizes[shared].tolist(), strict=True):
            members = sorted(rows[order[start : start + size]].tolist())
            if size <= _MAX_PAIRS_PER_BUCKET:
                pairs.update((x, y) for n, x in enumerate(members) for y in members[n + 1 :])
            else:
                # A huge bucket is one cluster; a chain plus a star links it without n^2 pairs.
                pairs.update(pairwise(members))
                pairs.update((members[0], y) for y in members[2:])
    return pairs


def near_duplicates(
    docs: Sequence[Sequence[str]], params: MinHashParams, protected: int = 0
) -> dict[int, Duplicate]:
    """index -> the earlier kept doc it nearly duplicates (exact shingle Jaccard >= threshold).

    The first `protected` docs are never removed (rows already published in a dataset).
    """
    if len(docs) < 2:
        return {}
    hashes, offsets = shingle_hashes(docs, params.shingle_words)
    sig = signatures(hashes, offsets, params.num_perm, params.seed)
    b, r = bands(params.threshold, params.num_perm)
    earlier: dict[int, list[tuple[int, float]]] = {}
    for i, j in candidate_pairs(sig, b, r, offsets[1:] > offsets[:-1]):
        x = hashes[offsets[i] : offsets[i + 1]]
        y = hashes[offsets[j] : offsets[j + 1]]
        shared = len(np.intersect1d(x, y, assume_unique=True))
        similarity = shared / (len(x) + len(y) - shared)
        if similarity >= params.threshold:
            earlier.setdefault(j, []).append((i, similarity))
    removed: dict[int, Duplicate] = {}
    for j in sorted(earlier):
        if j < protected:
            continue
        for i, similarity in sorted(earlier[j]):
            if i not in removed:
                removed[j] = Duplicate(kept=i, similarity=round(similarity, 4))
                break
    return removed
