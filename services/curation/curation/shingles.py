"""Shingle sets for MinHash, built for a whole corpus at once with numpy.

`shingle_hashes` returns (hashes, offsets): doc i owns the sorted, distinct uint32 hashes
`hashes[offsets[i]:offsets[i + 1]]`. Sets, not bags: repeated shingles change neither MinHash
nor Jaccard, only the work.

A shingle that holds an ASCII digit is a detail (order numbers, error codes, amounts, dates):
two fills of one ticket template share their boilerplate and differ in exactly these, while a
typo or a synonym rarely touches them. The lowest bit of every hash says whether it is one, so
the sets carry their weights without a second array.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from itertools import chain

import numpy as np

_MASK64 = (1 << 64) - 1
_SHINGLE_MULT = 0x9E3779B97F4A7C15  # odd 64-bit constant; chains word hashes into a shingle
_CHAR_MULT = np.uint64(0x100000001B3)  # FNV-64 prime: chains code points into a gram
_COPY_SALT = np.uint64(0xD6E8FEB86659FD93)
_SEPARATOR = "\x00"  # word_tokens never yields it, so no gram spans two documents


def _word_hash(word: str) -> int:
    return int.from_bytes(hashlib.blake2b(word.encode(), digest_size=8).digest(), "little")


def _fold(h: np.ndarray) -> np.ndarray:
    return ((h >> np.uint64(32)) ^ (h & np.uint64(0xFFFFFFFF))).astype(np.uint32)


def _mix64(h: np.ndarray) -> np.ndarray:
    """splitmix64's finaliser: a polynomial gram hash has weak low bits until mixed."""
    h = (h ^ (h >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
    h = (h ^ (h >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
    return h ^ (h >> np.uint64(31))


def _sets(owner: np.ndarray, hashes: np.ndarray, n_docs: int) -> tuple[np.ndarray, np.ndarray]:
    key = (owner.astype(np.uint64) << np.uint64(32)) | hashes.astype(np.uint64)
    key.sort()
    key = key[np.concatenate([[True], key[1:] != key[:-1]])] if len(key) else key
    owner = (key >> np.uint64(32)).astype(np.int64)
    out = (key & np.uint64(0xFFFFFFFF)).astype(np.uint32)
    return out, np.searchsorted(owner, np.arange(n_docs + 1), side="left").astype(np.int64)


def _word_grams(docs: Sequence[Sequence[str]], k: int) -> tuple[np.ndarray, ...]:
    """(owner, 64-bit hash, holds a digit) per word k-gram; a doc shorter than k is one gram."""
    every = list(chain.from_iterable(docs))
    # Each distinct word is hashed once, its lowest bit set when it holds a digit; the
    # per-token work is one C-level dict lookup.
    table = {
        w: (_word_hash(w) & ~1) | any("0" <= c <= "9" for c in w) for w in dict.fromkeys(every)
    }
    words = np.fromiter(map(table.__getitem__, every), dtype=np.uint64, count=len(every))
    digits = (words & np.uint64(1)).astype(bool)
    lengths = np.fromiter(map(len, docs), dtype=np.int64, count=len(docs))
    starts = np.cumsum(lengths) - lengths

    chained, held = words.copy(), digits.copy()
    for j in range(1, k):
        shifted = np.zeros_like(words)
        shifted[: len(words) - j] = words[j:]
        chained = chained * np.uint64(_SHINGLE_MULT) + shifted
        held[: len(words) - j] |= digits[j:]
    long_docs = lengths >= k
    position = np.arange(len(words)) - np.repeat(starts, lengths)
    valid = position <= np.repeat(lengths - k, lengths)
    counts = np.where(long_docs, lengths - k + 1, np.minimum(lengths, 1))
    owner = np.repeat(np.arange(len(docs)), counts)
    out = np.empty(len(owner), dtype=np.uint64)
    detail = np.empty(len(owner), dtype=bool)
    offsets = np.concatenate([[0], np.cumsum(counts)]).astype(np.int64)
    mask = np.repeat(long_docs, counts)
    out[mask], detail[mask] = chained[valid], held[valid]
    for d in np.flatnonzero(~long_docs & (lengths > 0)):
        h = 0
        for w in words[starts[d] : starts[d] + lengths[d]].tolist():
            h = (h * _SHINGLE_MULT + w) & _MASK64
        out[offsets[d]], detail[offsets[d]] = h, digits[starts[d] : starts[d] + lengths[d]].any()
    return owner, out, detail


def _char_grams(docs: Sequence[Sequence[str]], n: int) -> tuple[np.ndarray, ...]:
    """(owner, 64-bit hash, holds a digit) per character n-gram of the words joined by single
    spaces, across word boundaries; a doc shorter than n is one gram."""
    texts = [" ".join(d) for d in docs]
    joined = _SEPARATOR.join(texts) + _SEPARATOR
    if joined.isascii():
        codes = np.frombuffer(joined.encode("ascii"), dtype=np.uint8)
    else:
        codes = np.frombuffer(joined.encode("utf-32-le"), dtype=np.uint32)
    lengths = np.fromiter(map(len, texts), dtype=np.int64, count=len(texts))
    # Windows over the whole corpus at once; those that hold a separator are dropped.
    last = max(len(codes) - n + 1, 0)
    h = np.zeros(last, dtype=np.uint64)
    clean = np.ones(last, dtype=bool)
    digit = np.zeros(last, dtype=bool)
    is_digit = (codes >= 48) & (codes <= 57)
    for j in range(n):
        h = h * _CHAR_MULT + codes[j : j + last]
        clean &= codes[j : j + last] != 0
        digit |= is_digit[j : j + last]
    counts = np.maximum(lengths - n + 1, 0)
    owner = np.repeat(np.arange(len(texts)), counts)
    out, detail = h[clean], digit[clean]

    short = np.flatnonzero((lengths < n) & (lengths > 0))
    if len(short):
        whole = [_word_hash(texts[d]) for d in short.tolist()]
        owner = np.concatenate([owner, short])
        out = np.concatenate([out, np.array(whole, dtype=np.uint64)])
        detail = np.concatenate([detail, [any("0" <= c <= "9" for c in texts[d]) for d in short]])
    return owner, out, detail


def shingle_hashes(
    docs: Sequence[Sequence[str]], k: int, chars: int = 0
) -> tuple[np.ndarray, np.ndarray]:
    """Word k-grams (none when k is 0) plus character n-grams (none when `chars` is 0).

    The two kinds are salted apart; the lowest bit of a hash marks a detail, the other 31 bits
    identify the shingle.
    """
    kinds = [(_word_grams, k), (_char_grams, chars)]
    parts = [(salt, *grams(docs, size)) for salt, (grams, size) in enumerate(kinds) if size]
    if not parts:
        raise ValueError("no shingles: both word and character sizes are 0")
    owner = np.concatenate([o for _, o, _, _ in parts])
    # Multiply-shift: the top half of an odd multiple is a fine 32-bit hash, and cheaper than a
    # full mix (MinHash runs each value through murmur's finaliser anyway).
    h = np.concatenate([(g + np.uint64(s)) * _COPY_SALT >> np.uint64(32) for s, _, g, _ in parts])
    detail = np.concatenate([d for _, _, _, d in parts])
    return _sets(owner, (h & np.uint64(0xFFFFFFFE)) | detail.astype(np.uint64), len(docs))


def is_detail(hashes: np.ndarray) -> np.ndarray:
    return (hashes & np.uint32(1)).astype(bool)


def expand(
    hashes: np.ndarray, offsets: np.ndarray, detail_weight: int
) -> tuple[np.ndarray, np.ndarray]:
    """The sets with each detail shingle `detail_weight` times (salted copies), for MinHash.

    The plain Jaccard of two expanded sets, and so MinHash's estimate of it, is the Jaccard of
    the shingle sets with details weighted by that factor. A doc's copies follow its own
    shingles, unsorted: MinHash needs only each doc's hashes to be contiguous.
    """
    detail = is_detail(hashes)
    if detail_weight <= 1 or not detail.any():
        return hashes, offsets
    extra = detail_weight - 1
    n_docs = len(offsets) - 1
    owner = np.repeat(np.arange(n_docs), np.diff(offsets))
    copies = np.repeat(hashes[detail].astype(np.uint64), extra)
    salt = np.tile(np.arange(1, detail_weight, dtype=np.uint64), int(detail.sum()))
    every = np.concatenate([owner, np.repeat(owner[detail], extra)])
    # Two runs already ordered by doc: a stable argsort merges them in linear time.
    order = np.argsort(every, kind="stable")
    out = np.concatenate([hashes, _fold(_mix64(copies + salt * _COPY_SALT)) | np.uint32(1)])
    sizes = np.bincount(every, minlength=n_docs)
    return out[order], np.concatenate([[0], np.cumsum(sizes)]).astype(np.int64)
