"""Decontamination: no training row may share a word n-gram with a golden-set input.

The golden set is what the student is judged on; a training row that quotes one of its inputs
would make the evaluation measure memory, not skill. Texts are compared as case-folded words
(`word_tokens`), so punctuation and case do not hide a copy. A golden input shorter than n words
is matched as a whole (when it has at least MIN_SHORT_WORDS), so short ones are protected too.
"""

from __future__ import annotations

from collections.abc import Iterable

from .normalize import word_tokens

MIN_SHORT_WORDS = 3


class GoldenIndex:
    def __init__(self, golden: Iterable[tuple[str, str]], n: int) -> None:
        """`golden` yields (golden row id, input text)."""
        self.n = n
        self._grams: dict[int, dict[tuple[str, ...], str]] = {}
        for row_id, text in golden:
            words = word_tokens(text)
            if len(words) >= n:
                grams = {tuple(words[i : i + n]) for i in range(len(words) - n + 1)}
                size = n
            elif len(words) >= MIN_SHORT_WORDS:
                grams, size = {tuple(words)}, len(words)
            else:
                continue
            table = self._grams.setdefault(size, {})
            for gram in grams:
                table.setdefault(gram, row_id)

    def __len__(self) -> int:
        return sum(len(t) for t in self._grams.values())

    def match(self, *texts: str) -> tuple[str, str] | None:
        """(golden row id, the shared words) of the first overlap found, or None."""
        for text in texts:
            words = word_tokens(text)
            for size, table in self._grams.items():
                for i in range(len(words) - size + 1):
                    gram = tuple(words[i : i + size])
                    if gram in table:
                        return table[gram], " ".join(gram)
        return None
