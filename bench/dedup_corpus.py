"""A third kind-corpus for bench/dedup.py, written apart from the bank and helpdesk ones.

Four domains, none of them a support ticket to a bank or an IT desk: product reviews, e-mails
about flats, trips and deliveries, and short chat turns (one to three sentences). Lengths run
from 7 words to about 90. Split "A" (seed 101) was the only one run while the dedup was
chosen; split "B" (seed 202) is the held-out one, and only its figures are reported as such.

Planted near-duplicates, one kind per original:

- typo: letter slips (neighbour key, drop, double, transpose) on about one word in 12-25,
  sometimes a word lower- or title-cased;
- reorder: the sentences in another order (chat turns of two or three sentences included);
- reword: a synonym (some of two words) per 25 words or part of it, up to three; contractions
  ("do not" / "don't"); a filler word inserted, or a filler or article dropped.

Hard negatives:

- template: one message filled for several cases; every member differs from the first one in
  at least two of its key facts (order or booking number, product, amount, date, name, city);
- vocab: texts over one small vocabulary that swap who does what to whom and when ("the
  landlord called the plumber before the tenant paid" / "the tenant called the landlord
  before the plumber paid"), so their word sets are equal and their meanings are not.
"""

from __future__ import annotations

import random
import re

from dedup_corpus_data import (
    BRANDS,
    CHAT,
    CITIES,
    CONTRACT,
    EMAIL,
    FILLERS,
    FIRST,
    ITEMS,
    LAST,
    LINKS,
    OPENERS,
    REVIEW,
    ROLES,
    SIGNOFFS,
    SLOTS,
    STREETS,
    SYNONYMS,
    TAILS,
    TEMPLATES,
    VERBS,
)

Doc = tuple[str, int, str]  # text, cluster id, kind
SPLITS = {"A": 101, "B": 202}


def person(rnd: random.Random) -> str:
    return f"{rnd.choice(FIRST)} {rnd.choice(LAST)}"


def fill_in(rnd: random.Random, picked: list[str]) -> list[str]:
    return [
        s.format(
            item=rnd.choice(ITEMS),
            city=rnd.choice(CITIES),
            street=rnd.choice(STREETS),
            brand=rnd.choice(BRANDS),
        )
        for s in picked
    ]


def plain(rnd: random.Random, seen: dict[str, list[set[str]]]) -> str:
    """A review, an e-mail or a chat whose sentence templates overlap no earlier plain doc's in
    more than half of them: two such are near-duplicates whatever the generator meant."""
    for _ in range(1000):
        domain = rnd.choice(["review", "email", "chat"])
        pool, lo, hi = {"review": (REVIEW, 2, 7), "email": (EMAIL, 2, 6), "chat": (CHAT, 1, 3)}[
            domain
        ]
        picked = rnd.sample(pool, rnd.randint(lo, hi))
        mine = set(picked)
        if all(
            2 * len(mine & other) <= max(len(mine), len(other))
            for s in picked
            for other in seen.get(s, [])
        ):
            break
    for s in picked:
        seen.setdefault(s, []).append(mine)
    return written(rnd, domain, picked)


def written(rnd: random.Random, domain: str, picked: list[str]) -> str:
    if domain == "review":
        body = fill_in(rnd, picked)
        stars = f"{rnd.randint(1, 5)} out of 5." if rnd.random() < 0.5 else ""
        return " ".join(p for p in [*body, stars] if p)
    if domain == "email":
        parts = [rnd.choice(OPENERS), *fill_in(rnd, picked), rnd.choice(SIGNOFFS)]
        return " ".join(p for p in [*parts, person(rnd)] if p)
    turns = fill_in(rnd, picked)
    return " ".join(t + rnd.choice(["", ".", "?", "!"]) for t in turns).strip()


def template_group(rnd: random.Random) -> list[str]:
    text = rnd.choice(TEMPLATES)
    slots = sorted(set(re.findall(r"{(\w+)}", text)))
    first = {s: SLOTS[s](rnd) for s in slots}
    members = [first]
    for _ in range(rnd.randint(1, 5)):
        values = dict(first)
        for s in rnd.sample(slots, rnd.randint(2, min(4, len(slots)))):
            while values[s] == first[s]:
                values[s] = SLOTS[s](rnd)
        members.append(values)
    return [text.format(**m) for m in members]


def clause(roles: list[str], rnd: random.Random) -> str:
    a, b, c, d = rnd.sample(roles, 4)
    verb, verb2 = rnd.sample(VERBS, 2)
    return f"{a} {verb} {b} {rnd.choice(LINKS)} {c} {verb2} {d}{rnd.choice(TAILS)}"


def vocab_group(rnd: random.Random) -> list[str]:
    """Members are one skeleton (verbs, links, tails) with its roles rotated: member k gives
    each role the part of the k-th next one, so every two members use the same words and no
    role does in one what it does in another."""
    roles = rnd.choice(ROLES)
    skeleton = [clause(roles, rnd) for _ in range(rnd.randint(1, 4))]
    present = [r for r in roles if any(r in s for s in skeleton)]
    rnd.shuffle(present)
    pattern = re.compile("|".join(re.escape(r) for r in present))
    out = []
    for k in rnd.sample(range(len(present)), rnd.randint(2, min(4, len(present)))):
        mapping = {r: present[(i + k) % len(present)] for i, r in enumerate(present)}
        body = [pattern.sub(lambda m, to=mapping: to[m.group(0)], s) for s in skeleton]
        out.append(" ".join(s[0].upper() + s[1:] + "." for s in body))
    return out


NEIGHBOUR = dict(zip("qwertyuiopasdfghjklzxcvbnm", "wqrtyuiopsadfghjkklxcvbnmn", strict=True))


def slip(word: str, rnd: random.Random) -> str:
    spots = [i for i, c in enumerate(word[:-1]) if c.isalpha() and word[i + 1].isalpha()]
    if not spots:
        return word
    i = rnd.choice(spots)
    op = rnd.choice(["neighbour", "drop", "double", "transpose"])
    if op == "neighbour":
        return word[:i] + NEIGHBOUR.get(word[i].lower(), word[i]) + word[i + 1 :]
    if op == "drop":
        return word[:i] + word[i + 1 :]
    if op == "double":
        return word[:i] + word[i] + word[i:]
    return word[:i] + word[i + 1] + word[i] + word[i + 2 :]


def typo(text: str, rnd: random.Random) -> str:
    words = text.split(" ")
    for _ in range(max(1, round(len(words) / rnd.uniform(12, 25)))):
        i = rnd.randrange(len(words))
        words[i] = slip(words[i], rnd)
    if rnd.random() < 0.3:
        i = rnd.randrange(len(words))
        words[i] = rnd.choice([str.lower, str.title])(words[i])
    return " ".join(words)


def split_sentences(text: str) -> list[str]:
    return [s for s in re.split(r"(?<=[.?!])\s+", text) if s]


def reorder(text: str, rnd: random.Random) -> str:
    parts = split_sentences(text)
    order = parts[:]
    while order == parts:
        rnd.shuffle(order)
    return " ".join(order)


def reword(text: str, rnd: random.Random) -> str:
    for long, short in rnd.sample(sorted(CONTRACT.items()), 2):
        text = text.replace(long, short) if rnd.random() < 0.5 else text
    words = text.split(" ")
    spots = [i for i, w in enumerate(words) if w.lower().strip(".,?!") in SYNONYMS]
    # Light for the length: one synonym per 25 words or part of it, at most three.
    for i in rnd.sample(spots, min(len(spots), 3, 1 + len(words) // 25)):
        core = words[i].strip(".,?!")
        new = rnd.choice(SYNONYMS[core.lower()])
        words[i] = words[i].replace(core, new.capitalize() if core[0].isupper() else new)
    if rnd.random() < 0.5:
        words.insert(rnd.randrange(1, len(words)), rnd.choice(FILLERS))
    fill = [i for i, w in enumerate(words) if w in FILLERS or w in ("the", "a")]
    if fill and rnd.random() < 0.3:
        del words[rnd.choice(fill)]
    return " ".join(words)


PERTURB = {"typo": typo, "reorder": reorder, "reword": reword}


def corpus(n: int, seed: int, planted_share: float = 0.25) -> list[Doc]:
    """n docs of every domain; about planted_share of them are planted copies."""
    rnd = random.Random(seed)
    docs: list[Doc] = []
    seen: dict[str, list[set[str]]] = {}
    cluster = 0
    while len(docs) < n:
        roll = rnd.random()
        if roll < 0.6:
            originals, kind = [plain(rnd, seen)], "plain"
        elif roll < 0.85:
            originals, kind = template_group(rnd), "template"
        else:
            originals, kind = vocab_group(rnd), "vocab"
        for text in originals:
            docs.append((text, cluster, kind))
            if rnd.random() < planted_share / (1 - planted_share) / 1.4:
                how = rnd.choice(sorted(PERTURB))
                if how == "reorder" and len(split_sentences(text)) < 2:
                    how = "reword"  # one sentence: nothing to move
                for _ in range(rnd.choice([1, 1, 2])):
                    copy = PERTURB[how](text, rnd)
                    if copy != text:
                        docs.append((copy, cluster, how))
            cluster += 1
    docs = docs[:n]
    rnd.shuffle(docs)
    return docs


def split(name: str, n: int) -> list[Doc]:
    return corpus(n, SPLITS[name])
