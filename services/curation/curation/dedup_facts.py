"""Key facts of a text, and whether two texts state different ones.

Shingle similarity says how much two texts share; it cannot say whether what differs matters.
Two fills of one message template share their boilerplate and differ in a few words, and so
does a lightly reworded copy. What tells them apart is the kind of word that differs: a copy
changes common words (synonyms, fillers, typos), a fill changes the facts (order numbers,
amounts, dates, names, places, products).

A fact is a token that holds a digit, or one written with a capital letter where the sentence
does not call for one (not its first word): names, cities, months and weekdays, brands.
Facts are compared case-folded, against every token of the other text, so a copy that lower-
cases a name or title-cases a common word changes nothing.

Two texts contradict each other when each states a fact the other lacks: a substitution, as
between two fills of a template. A copy that only drops a fact (or adds one) does not: one
side lacks nothing. A fact that is one typo (Damerau-Levenshtein 1) away from a
token of the other text with the same digits is not missing either: a slip may hit the letters
of "INC920692" or "19th", but a number that changes is another number.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Iterable

# A word, and whether what precedes it ends a sentence (or starts the text).
_TOKEN = re.compile(r"(?:^|([.!?:;\n])|[^\w.!?:;\n])[\s\"'(\[*-]*(\w+)")


def facts(text: str) -> frozenset[str]:
    """Case-folded fact tokens of a text (see the module's docstring)."""
    out = []
    for at, match in enumerate(_TOKEN.finditer(unicodedata.normalize("NFKC", text))):
        word = match.group(2)
        if word.islower() and word.isalpha():
            continue  # most words: two C calls
        if not word.isalpha():
            out.append(word)  # digits (or an underscore joining words)
        elif any(c.isupper() for c in word[1:]) and not word.isupper():
            out.append(word)  # iPhone, McAllister: cased inside the word
        elif word[0].isupper() and word != "I" and at > 0 and match.group(1) is None:
            out.append(word)
    return frozenset(w.casefold() for w in out)


def _one_edit(a: str, b: str) -> bool:
    """Damerau-Levenshtein distance exactly 1 (substitution, indel, adjacent transposition)."""
    if abs(len(a) - len(b)) > 1 or a == b:
        return False
    if len(a) > len(b):
        a, b = b, a
    i = 0
    while i < len(a) and a[i] == b[i]:
        i += 1
    if len(a) < len(b):
        return a[i:] == b[i + 1 :]
    if a[i + 1 :] == b[i + 1 :]:
        return True
    return i + 1 < len(a) and a[i] == b[i + 1] and a[i + 1] == b[i] and a[i + 2 :] == b[i + 2 :]


def _digits(word: str) -> str:
    return "".join(c for c in word if c.isdigit())


def _missing(mine: Iterable[str], theirs: set[str]) -> bool:
    for fact in mine:
        if fact in theirs:
            continue
        digits = _digits(fact)
        near = (t for t in theirs if abs(len(t) - len(fact)) <= 1 and _digits(t) == digits)
        if not any(_one_edit(fact, t) for t in near):
            return True
    return False


def contradict(
    facts_a: frozenset[str], tokens_a: set[str], facts_b: frozenset[str], tokens_b: set[str]
) -> bool:
    """Each text states a fact the other one lacks (tokens: each text's case-folded words)."""
    return _missing(facts_a - tokens_b, tokens_b) and _missing(facts_b - tokens_a, tokens_a)
