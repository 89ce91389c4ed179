"""The ticket-triage pack's data, generated: golden set, general-capability probes, prose.

Labels are right by construction: each ticket's labels are drawn first, then its text is
composed only from fragments (fragments.yaml) that imply exactly those labels. Nothing is
labelled after the fact, by a model or by a person.

Two splits draw from disjoint halves of every text list: "golden" (golden.jsonl) and
"synthetic" (the stand-in teacher's training tickets). Same situations and labels, different
words, so training tickets pass curation's n-gram decontamination against the golden set and
the golden score measures generalisation, not recall.

    python tasks/ticket-triage/generate.py     # rewrites golden.jsonl, probe.jsonl, general.txt

Other code loads this file by path (it is not a package) and calls
`make_examples(n, seed, split=...)`. Only the standard library and PyYAML are used, so that
works from any test.
"""

from __future__ import annotations

import functools
import hashlib
import json
import random
from pathlib import Path
from typing import Any, Literal

import yaml

HERE = Path(__file__).resolve().parent
SEED = 20261129
GOLDEN_ROWS = 240
PROBES = 48
KEYS = ("category", "priority", "product", "needs_human", "language")
STYLES = ("terse", "detailed", "informal", "angry")
MAX_DRAWS = 200  # redraws per row before giving up on finding an unseen ticket
EXTRA_SHARE = 0.5  # tickets with a tone-only extra line (customer number, who is copied)
Split = Literal["golden", "synthetic"]
SPLITS: tuple[Split, ...] = ("golden", "synthetic")


@functools.cache
def fragments() -> dict[str, Any]:
    return yaml.safe_load((HERE / "fragments.yaml").read_text(encoding="utf-8"))


@functools.cache
def pool(split: Split) -> dict[str, Any]:
    """fragments.yaml as one split sees it: every text list (a list filed under a language
    code) cut to its even (golden) or odd (synthetic) positions. Entries, slots, priorities
    and products are shared, so both splits have the same situations and label distribution.

    The synthetic split also gets fragments_synthetic.yaml's impact sentences (why: that
    file's header), so golden.jsonl does not depend on them.
    """
    if split not in SPLITS:
        raise ValueError(f"split must be one of {SPLITS}, not {split!r}")
    f = fragments()
    cut = _cut(f, SPLITS.index(split), set(f["languages"]), "")
    if split == "synthetic":
        for category, by_priority in synthetic_impacts().items():
            for priority, by_language in by_priority.items():
                for language, texts in by_language.items():
                    cut["impacts"][category][priority][language] += texts
    return cut


@functools.cache
def synthetic_impacts() -> dict[str, Any]:
    text = (HERE / "fragments_synthetic.yaml").read_text(encoding="utf-8")
    return yaml.safe_load(text)["impacts"]


def _cut(node: Any, parity: int, languages: set[str], key: str) -> Any:
    if isinstance(node, dict):
        return {k: _cut(v, parity, languages, k) for k, v in node.items()}
    if isinstance(node, list) and key in languages:
        if len(node) < len(SPLITS):
            raise ValueError(f"fragments.yaml: a {key} list needs one text per split: {node}")
        return node[parity :: len(SPLITS)]
    if isinstance(node, list):
        return [_cut(v, parity, languages, key) for v in node]
    return node


@functools.cache
def spec() -> dict[str, Any]:
    return yaml.safe_load((HERE / "spec.yaml").read_text(encoding="utf-8"))


def allocate(n: int, weights: dict[str, float]) -> dict[str, int]:
    """Split n by weight (largest remainder), so counts sum to n and follow the weights."""
    total = sum(weights.values())
    exact = {k: n * w / total for k, w in weights.items()}
    counts = {k: int(v) for k, v in exact.items()}
    by_remainder = sorted(weights, key=lambda k: (-(exact[k] - counts[k]), k))
    for k in by_remainder[: n - sum(counts.values())]:
        counts[k] += 1
    return counts


def _rng(seed: int) -> random.Random:
    return random.Random(seed)  # noqa: S311 - reproducible data, not secrets


def _pick(rng: random.Random, options: list[str]) -> str:
    return options[rng.randrange(len(options))]


def _weighted(rng: random.Random, weights: dict[str, float]) -> str:
    keys = sorted(weights)
    return rng.choices(keys, weights=[weights[k] for k in keys])[0]


def _fill(text: str, rng: random.Random, **slots: str) -> str:
    return text.format(
        num=str(rng.randint(20, 999)),
        price=_pick(rng, ["29", "49", "79", "99", "149"]),
        order=f"TW-{rng.randint(10000, 99999)}",
        **slots,
    )


def label(category: str, priority: str, product: str, needs_human: bool, language: str) -> str:
    values = (category, priority, product, needs_human, language)
    return json.dumps(dict(zip(KEYS, values, strict=True)), ensure_ascii=False)


def _compose_ticket(rng: random.Random, use_case: str, f: dict[str, Any]) -> tuple[str, str]:
    lang = _weighted(rng, f["languages"])
    issue = _pick(rng, [i for i in f["issues"] if i["category"] == use_case])
    priority = _pick(rng, issue["priorities"])
    product = issue["product"]
    if product == "slot":
        product = _pick(rng, issue["slot_products"])
    human = bool(issue.get("human")) or priority == "urgent"
    style = _pick(rng, list(STYLES))

    subject = _fill(_pick(rng, issue["subject"][lang]), rng)
    core = [_fill(_pick(rng, issue["body"][lang]), rng, product=f["products"][product])]
    if use_case == "technical" and style == "detailed" and rng.random() < 0.5:
        others = [p for p in ("pos", "terminal", "storefront", "inventory") if p != product]
        other = f["products"][_pick(rng, others)]
        core.append(_pick(rng, f["others"][lang]).format(other=other))
    if issue.get("impact", True):
        core.append(_pick(rng, f["impacts"][use_case][priority][lang]))
    if rng.random() < EXTRA_SHARE:
        core.append(_fill(_pick(rng, f["extras"][lang]), rng))

    if style == "terse":
        body = " ".join(core)
    elif style == "detailed":
        if issue.get("context", True):
            core.insert(0, _pick(rng, f["context"][lang]))
        body = "\n\n".join(
            [
                _pick(rng, f["greetings"]["formal"][lang]),
                " ".join(core),
                _pick(rng, f["closings"][lang]),
                f"{_pick(rng, f['signoffs']['formal'][lang])}\n{_pick(rng, f['names'][lang])}",
            ]
        )
    elif style == "informal":
        greeting = _pick(rng, f["greetings"]["casual"][lang])
        signoff = _pick(rng, f["signoffs"]["casual"][lang])
        body = f"{greeting} {' '.join(core)}\n{signoff}".lower()
        subject = subject.lower()
    else:  # angry: the tone is loud, the labels are whatever the impact says
        body = f"{_pick(rng, f['angry'][lang])} {' '.join(core)}\n\n{_pick(rng, f['names'][lang])}"
    text = f"Subject: {subject}\n\n{body}"
    return text, label(use_case, priority, product, human, lang)


def _compose_negative(rng: random.Random, f: dict[str, Any]) -> tuple[str, str, str]:
    lang = _weighted(rng, f["languages"])
    entry = _pick(rng, [n for n in f["negatives"] if lang in n["body"]])
    subject = _fill(_pick(rng, entry["subject"][lang]), rng)
    body = _fill(_pick(rng, entry["body"][lang]), rng)
    text = f"Subject: {subject}\n\n{body}"
    return text, label("unknown", "low", "none", True, lang), entry["use_case"]


def make_examples(n: int, seed: int, split: Split = "golden") -> list[dict[str, Any]]:
    """n golden-format rows: every use case by its weight, negatives at the spec's share.

    Rows are {"id", "input", "output", "use_case", "negative"}; output is JSON text. The same
    (n, seed, split) always gives the same rows; inputs are unique within one call. The
    "synthetic" split shares no fragment text with the "golden" one (see `pool`): use it for
    anything that trains a model that golden.jsonl evaluates.
    """
    f = pool(split)
    s = spec()
    negatives = round(n * s["negatives"]["share"])
    counts = allocate(n - negatives, {u["name"]: u["weight"] for u in s["use_cases"]})
    plan: list[str | None] = [uc for uc in sorted(counts) for _ in range(counts[uc])]
    plan += [None] * negatives
    rng = _rng(seed)
    rng.shuffle(plan)
    rows: list[dict[str, Any]] = []
    seen: set[str] = set()
    for use_case in plan:
        for _ in range(MAX_DRAWS):
            if use_case is None:
                text, output, slice_name = _compose_negative(rng, f)
            else:
                (text, output), slice_name = _compose_ticket(rng, use_case, f), use_case
            if text not in seen:
                break
        else:
            raise ValueError(f"fragments.yaml has too few variants for {n} unique tickets")
        seen.add(text)
        rows.append(
            {
                "id": "tt-" + hashlib.sha256(text.encode()).hexdigest()[:16],
                "input": text,
                "output": output,
                "use_case": slice_name,
                "negative": use_case is None,
            }
        )
    return rows


CAPITALS = {
    "France": "Paris",
    "Germany": "Berlin",
    "Spain": "Madrid",
    "Italy": "Rome",
    "Japan": "Tokyo",
    "Canada": "Ottawa",
    "Australia": "Canberra",
    "Egypt": "Cairo",
    "Kenya": "Nairobi",
    "Norway": "Oslo",
    "Portugal": "Lisbon",
    "Poland": "Warsaw",
    "Greece": "Athens",
    "Peru": "Lima",
    "Ireland": "Dublin",
    "Argentina": "Buenos Aires",
}
CONVERSIONS = [
    ("kilometres", "metres", 1000),
    ("metres", "centimetres", 100),
    ("kilograms", "grams", 1000),
    ("hours", "minutes", 60),
    ("minutes", "seconds", 60),
    ("litres", "millilitres", 1000),
    ("days", "hours", 24),
    ("feet", "inches", 12),
]
WORDS = [
    "garden", "planet", "window", "silver", "lantern", "marble",
    "orange", "pencil", "rocket", "velvet", "harbour", "meadow",
]  # fmt: skip


def _probe(rng: random.Random, kind: str, used_capitals: set[str]) -> tuple[str, str]:
    if kind == "arithmetic":
        a, b = rng.randint(12, 99), rng.randint(3, 48)
        op = _pick(rng, ["+", "-", "*"])
        value = {"+": a + b, "-": a - b, "*": a * b}[op]
        return f"What is {a} {op} {b}? Reply with the number only.", str(value)
    if kind == "conversion":
        big, small, factor = CONVERSIONS[rng.randrange(len(CONVERSIONS))]
        k = rng.randint(2, 9)
        return f"How many {small} are there in {k} {big}? Reply with the number only.", str(
            k * factor
        )
    if kind == "capital":
        country = _pick(rng, sorted(set(CAPITALS) - used_capitals))
        used_capitals.add(country)
        return f"What is the capital city of {country}? Reply with the city only.", CAPITALS[
            country
        ]
    task = _pick(rng, ["reverse", "length", "alphabetical", "join"])
    w1, w2, w3 = rng.sample(WORDS, 3)
    if task == "reverse":
        return f"Write the word '{w1}' backwards. Reply with that word only.", w1[::-1]
    if task == "length":
        return f"How many letters are in the word '{w1}'? Reply with the number only.", str(len(w1))
    if task == "alphabetical":
        prompt = f"Which comes first in alphabetical order, '{w1}' or '{w2}'? Reply with it only."
        return prompt, min(w1, w2)
    return f"Join the words {w1}, {w2} and {w3} with hyphens, in that order.", f"{w1}-{w2}-{w3}"


def make_probes(n: int, seed: int) -> list[dict[str, str]]:
    """General-capability probes with one verifiable answer each, the kinds in turn."""
    rng = _rng(seed)
    kinds = ("arithmetic", "conversion", "capital", "string")
    rows, prompts, used_capitals = [], set(), set()
    for i in range(n):
        kind = kinds[i % len(kinds)]
        for _ in range(MAX_DRAWS):
            prompt, answer = _probe(rng, kind, used_capitals)
            if prompt not in prompts:
                break
        else:
            raise ValueError(f"cannot make {n} distinct probes")
        prompts.add(prompt)
        rows.append({"id": f"probe-{i + 1:03d}", "kind": kind, "prompt": prompt, "answer": answer})
    return rows


def general_text() -> str:
    return "\n\n".join(" ".join(p.split()) for p in fragments()["general_text"]) + "\n"


def _jsonl(rows: list[dict[str, Any]]) -> str:
    return "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows)


def outputs() -> dict[str, str]:
    """What `main` writes, by file name; tests compare it with the checked-in files."""
    return {
        "golden.jsonl": _jsonl(make_examples(GOLDEN_ROWS, SEED, split="golden")),
        "probe.jsonl": _jsonl(make_probes(PROBES, SEED)),
        "general.txt": general_text(),
    }


def main() -> None:
    for name, text in outputs().items():
        (HERE / name).write_text(text, encoding="utf-8", newline="\n")
        print(f"wrote {HERE / name} ({len(text.encode())} bytes)")


if __name__ == "__main__":
    main()
