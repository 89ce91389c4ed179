"""Exact and near-duplicate detection: MinHash signatures and LSH bands, computed in bulk.

The MinHash scheme is datasketch's "affine32" (murmur3 finaliser, then `a*h + b mod 2^32`) with
datasketch's own permutations for the seed, and the bands are the (b, r) that datasketch's
MinHashLSH picks for a threshold; unit tests check signatures bit for bit against
`datasketch.MinHash` and candidates against `MinHashLSH.query`. What differs from the textbook
loop is how the work is done:

- shingle hashes for the whole corpus come from numpy arithmetic (each distinct word hashed
  once), not a sha1 call per shingle (`curation.shingles`);
- signatures are vectorised permutations and `np.minimum.reduceat` over chunks of documents;
- bands are grouped by sorting band keys, not by inserting into and querying dicts per doc;
- every LSH candidate is verified with the exact similarity of the two shingle sets, so a
  pair below the threshold is never called a duplicate (LSH alone admits such pairs).

What counts as similar was chosen on `bench/dedup.py`'s corpora (figures in bench/README.md):

- shingles are character 3-grams (a typo changes at most three) plus word 3-grams (a word set
  cannot tell "the bank paid the clerk" from "the clerk paid the bank"; word trigrams can);
- a shingle holding a digit counts `detail_weight` times: two fills of one ticket template
  share their boilerplate and differ in order numbers, codes, amounts and dates;
- similarity is the Sørensen-Dice coefficient 2|A & B| / (|A| + |B|) of the weighted sets,
  which is 2J / (1 + J) for their Jaccard J. The spec threshold stays 0.85; in Jaccard terms
  that is 0.739, where the measured gap between planted copies and hard negatives lies for
  these shingles (Jaccard 0.85 on them misses 17 % of the copies with four typos in a
  50-word e-mail, Dice 0.85 1 %).

A pair at or above the threshold whose texts each state a key fact the other lacks (a number,
a name) is still two documents: `curation.dedup_facts`, measured on bench/dedup_corpus.py.

Order decides which of two duplicates stays: the earlier document is kept, and a document is
only a duplicate of one that is itself kept, as in the streaming insert/query loop.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from functools import lru_cache

import numpy as np

from .dedup_facts import contradict, facts
from .normalize import word_tokens
from .shingles import expand, is_detail, shingle_hashes

_BAND_MULT = np.uint64(0xC2B2AE3D27D4EB4F)
_MAX_PAIRS_PER_BUCKET = 64
_CHUNK_SHINGLES = 1 << 20  # per signature chunk: 4 MiB of uint32 per working array
# LSH bands are picked for a Jaccard this far below the threshold's: at the threshold itself
# they find a pair only about half the time, and the exact check makes extra candidates
# harmless. Then a candidate whose signatures agree on fewer than (Jaccard - slack) of their
# values is dropped unchecked: the agreement estimates the weighted Jaccard with a standard
# deviation of about 0.04 at 128 permutations.
_LSH_MARGIN = 0.2
_ESTIMATE_SLACK = 0.15


@dataclass(frozen=True)
class MinHashParams:
    threshold: float
    num_perm: int = 128
    shingle_words: int = 3
    seed: int = 1
    shingle_chars: int = 3
    detail_weight: int = 4
    # A pair whose texts each state a key fact the other lacks is never a duplicate
    # (curation.dedup_facts); off only to measure what it buys.
    check_facts: bool = True


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


def _bucket_pairs(starts: np.ndarray, sizes: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Positions (left, right) of the pairs within buckets [start, start + size) of a sorted
    band: every pair in a small bucket; in a huge one, which is one cluster, a chain plus a
    star links it without n^2 pairs."""
    small = sizes <= _MAX_PAIRS_PER_BUCKET
    first = np.repeat(starts[small], sizes[small])
    at = (
        first
        + np.arange(len(first))
        - np.repeat(np.cumsum(sizes[small]) - sizes[small], sizes[small])
    )
    after = np.repeat(starts[small] + sizes[small], sizes[small]) - at - 1
    left = np.repeat(at, after)
    right = left + 1 + np.arange(len(left)) - np.repeat(np.cumsum(after) - after, after)
    chains = [(left, right)]
    for start, size in zip(starts[~small].tolist(), sizes[~small].tolist(), strict=True):
        chain = np.arange(start, start + size - 1)
        chains += [(chain, chain + 1), (np.full(size - 2, start), chain[1:] + 1)]
    return np.concatenate([c[0] for c in chains]), np.concatenate([c[1] for c in chains])


def candidate_pairs(sig: np.ndarray, b: int, r: int, eligible: np.ndarray) -> np.ndarray:
    """Pairs (i < j) that share at least one band, as MinHashLSH buckets them: (n, 2), sorted."""
    rows = np.flatnonzero(eligible)
    found = [np.zeros(0, dtype=np.int64)]
    if len(rows) < 2:
        return np.zeros((0, 2), dtype=np.int64)
    for band in range(b):
        block = sig[rows, band * r : (band + 1) * r].astype(np.uint64)
        key = np.zeros(len(rows), dtype=np.uint64)
        for col in range(r):
            key = key * _BAND_MULT + block[:, col]
        # Stable, so a bucket's members stay in ascending order and every pair has i < j.
        order = np.argsort(key, kind="stable")
        ordered = key[order]
        starts = np.flatnonzero(np.concatenate([[True], ordered[1:] != ordered[:-1]]))
        sizes = np.diff(np.append(starts, len(ordered)))
        left, right = _bucket_pairs(starts[sizes > 1], sizes[sizes > 1])
        found.append(rows[order[left]] * len(sig) + rows[order[right]])
    pairs = np.unique(np.concatenate(found))
    return np.stack([pairs // len(sig), pairs % len(sig)], axis=1)


def dice(x: np.ndarray, y: np.ndarray, detail_weight: int) -> float:
    """Sørensen-Dice of two shingle sets (sorted, distinct) with details weighted."""
    both = np.intersect1d(x, y, assume_unique=True)
    extra = detail_weight - 1
    shared = len(both) + extra * int(np.count_nonzero(is_detail(both)))
    sizes = (
        len(x)
        + len(y)
        + extra * int(np.count_nonzero(is_detail(x)) + np.count_nonzero(is_detail(y)))
    )
    return 2 * shared / sizes if sizes else 1.0


class _Facts:
    """Each doc's facts and token set, computed only for docs in a pair that passed Dice."""

    def __init__(self, texts: Sequence[str | Sequence[str]], docs: Sequence[Sequence[str]]):
        self.texts, self.docs = texts, docs
        self.cache: dict[int, tuple[frozenset[str], set[str]]] = {}

    def __getitem__(self, i: int) -> tuple[frozenset[str], set[str]]:
        if i not in self.cache:
            text, tokens = self.texts[i], set(self.docs[i])
            # Without the text, case is gone: only the tokens holding digits are facts.
            found = facts(text) if isinstance(text, str) else frozenset(
                t for t in tokens if any(c.isdigit() for c in t))  # fmt: skip
            self.cache[i] = (found, tokens)
        return self.cache[i]


def near_duplicates(
    texts: Sequence[str | Sequence[str]], params: MinHashParams, protected: int = 0
) -> dict[int, Duplicate]:
    """index -> the earlier kept doc it nearly duplicates: exact weighted Dice >= threshold, and
    no key fact of one contradicted by the other (see curation.dedup_facts).

    Each doc is its text, or its `word_tokens` (then only numbers count as facts). The first
    `protected` docs are never removed (rows already published in a dataset).
    """
    if len(texts) < 2:
        return {}
    docs = [word_tokens(t) if isinstance(t, str) else t for t in texts]
    known = _Facts(texts, docs)
    hashes, offsets = shingle_hashes(docs, params.shingle_words, params.shingle_chars)
    sig = signatures(*expand(hashes, offsets, params.detail_weight), params.num_perm, params.seed)
    jaccard = params.threshold / (2 - params.threshold)
    b, r = bands(max(jaccard - _LSH_MARGIN, 0.05), params.num_perm)
    pairs = candidate_pairs(sig, b, r, offsets[1:] > offsets[:-1])
    likely = np.concatenate(
        [
            (sig[chunk[:, 0]] == sig[chunk[:, 1]]).mean(axis=1) >= jaccard - _ESTIMATE_SLACK
            for chunk in np.array_split(pairs, max(1, len(pairs) // 8192))
        ]
    )
    earlier: dict[int, list[tuple[int, float]]] = {}
    for i, j in pairs[likely].tolist():
        x = hashes[offsets[i] : offsets[i + 1]]
        y = hashes[offsets[j] : offsets[j + 1]]
        similarity = dice(x, y, params.detail_weight)
        if similarity < params.threshold:
            continue
        if not (params.check_facts and contradict(*known[i], *known[j])):
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
