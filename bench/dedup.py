"""Near-duplicate detection: curation's dedup against the textbook datasketch loop, same run.

Three seeded corpora, each with its ground truth (the cluster every document came from) and
each document's kind:

- tickets (`dedup_tickets.py`): the original corpus, ticket-like documents with planted copies
  made by 1-3 word edits plus case, punctuation and spacing changes (kind "edit");
- bank (`dedup_bank.py`, the tuning set): support e-mails to a bank with three kinds of planted
  copies (typo, reorder, reword) and two kinds of hard negatives: templated letters filled in
  for different customers (template) and texts over one small vocabulary (vocab);
- helpdesk (`dedup_helpdesk.py`): IT-helpdesk tickets with the same five kinds built
  independently; held out when the shingles were chosen;
- mixed-a / mixed-b (`dedup_corpus.py`): reviews, e-mails and chat turns (7-90 words) with the
  same five kinds built a third way; split A (seed 101) chose the fact check, split B (seed 202)
  is held out.

Every path processes the same shuffled corpus in the same order and keeps the first document
of a duplicate group:

- project: `curation.dedup.near_duplicates` on the texts, with the service's default
  configuration, as the curation service runs it (Dice of the shingles, then the fact check);
- previous: the same shingles and threshold on `word_tokens`, without the fact check;
- word set: the same code configured as before that (single-word shingles, Jaccard);
- textbook: `MinHash()` per doc, `update()` per word of `text.split()`, then
  `MinHashLSH.query` and `insert` when nothing is found (the datasketch README loop);
- textbook + tokens: the same loop on the project's tokens (what normalisation buys);
- datasketch bulk: `MinHash.bulk` on the project's tokens, then the same query/insert loop.

A removed document is a true positive when the document it was matched to is in its cluster.
Per kind of planted copy: precision and recall over the clusters holding copies of that kind;
per kind of hard negative: the share of those documents removed as a copy of another cluster.

    .venv/bin/python bench/dedup.py [--corpus all|tickets|bank|helpdesk|mixed-a|mixed-b] [--quick]
"""

from __future__ import annotations

import argparse
import sys
import time
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import replace
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
for path in (ROOT, ROOT / "services" / "curation", ROOT / "bench"):
    if str(path) not in sys.path:
        sys.path.insert(0, str(path))

import dedup_bank  # noqa: E402
import dedup_corpus  # noqa: E402
import dedup_helpdesk  # noqa: E402
import dedup_tickets  # noqa: E402
from datasketch import MinHash, MinHashLSH  # noqa: E402

from curation.dedup import MinHashParams, bands, near_duplicates, permutations  # noqa: E402
from curation.normalize import word_tokens  # noqa: E402
from shared.tasks.sections import Curation  # noqa: E402

NUM_PERM = 128
Doc = tuple[str, int, str]
CORPORA: dict[str, tuple[str, Callable[[int, int], list[Doc]], int]] = {
    "tickets": ("original tickets", dedup_tickets.corpus, 7),
    "bank": ("tuning set: bank e-mails", dedup_bank.corpus, 11),
    "helpdesk": ("IT helpdesk", dedup_helpdesk.corpus, 23),
    "mixed-a": ("tuning split: reviews, e-mails, chats", dedup_corpus.corpus, 101),
    "mixed-b": ("held out: reviews, e-mails, chats", dedup_corpus.corpus, 202),
}
COPIES = ("edit", "typo", "reorder", "reword")
NEGATIVES = ("template", "vocab")


def textbook(texts: Sequence[str], threshold: float, tokenize: Callable) -> dict[int, int]:
    lsh = MinHashLSH(threshold=threshold, num_perm=NUM_PERM)
    removed: dict[int, int] = {}
    for i, text in enumerate(texts):
        m = MinHash(num_perm=NUM_PERM)
        for s in tokenize(text):
            m.update(s.encode("utf8"))
        hits = lsh.query(m)
        if hits:
            removed[i] = min(hits)
        else:
            lsh.insert(i, m)
    return removed


def bulk(texts: Sequence[str], threshold: float) -> dict[int, int]:
    """datasketch used well on its own: MinHash.bulk (update_batch per doc), then the same
    query/insert loop."""
    encoded = [[s.encode("utf8") for s in word_tokens(t)] for t in texts]
    sketches = MinHash.bulk(encoded, num_perm=NUM_PERM)
    lsh = MinHashLSH(threshold=threshold, num_perm=NUM_PERM)
    removed: dict[int, int] = {}
    for i, m in enumerate(sketches):
        hits = lsh.query(m)
        if hits:
            removed[i] = min(hits)
        else:
            lsh.insert(i, m)
    return removed


def project(texts: Sequence[str], params: MinHashParams) -> dict[int, int]:
    return {j: d.kept for j, d in near_duplicates(texts, params).items()}


def previous(texts: Sequence[str], params: MinHashParams) -> dict[int, int]:
    """The configuration before the fact check: same shingles on tokens, Dice alone."""
    found = near_duplicates([word_tokens(t) for t in texts], replace(params, check_facts=False))
    return {j: d.kept for j, d in found.items()}


def word_set(threshold: float) -> MinHashParams:
    """The configuration before this one: word sets, Jaccard >= threshold (as Dice)."""
    dice = 2 * threshold / (1 + threshold)
    return MinHashParams(
        dice, NUM_PERM, shingle_words=1, shingle_chars=0, detail_weight=1, check_facts=False
    )


def f1(p: float, r: float) -> float:
    return 2 * p * r / (p + r) if p + r else 0.0


def score(removed: dict[int, int], docs: Sequence[Doc]) -> dict[str, tuple[float, ...]]:
    """kind -> (precision, recall, f1) for copies and "all"; kind -> (false-positive rate,)."""
    cluster = [c for _, c, _ in docs]
    kind = [k for _, _, k in docs]
    size = Counter(cluster)
    copy_kind = {c: k for c, k in zip(cluster, kind, strict=True) if k in COPIES}
    hit = {j: cluster[i] == cluster[j] for j, i in removed.items()}
    out: dict[str, tuple[float, ...]] = {}
    for k in sorted(set(copy_kind.values()), key=COPIES.index):
        mine = {c for c, ck in copy_kind.items() if ck == k}
        judged = [hit[j] for j in removed if cluster[j] in mine]
        expected = sum(size[c] - 1 for c in mine)
        p = sum(judged) / len(judged) if judged else 1.0
        r = sum(judged) / expected
        out[k] = (p, r, f1(p, r))
    for k in NEGATIVES:
        total = kind.count(k)
        if total:
            out[k] = (sum(1 for j in removed if kind[j] == k and not hit[j]) / total,)
    p = sum(hit.values()) / len(removed) if removed else 1.0
    r = sum(hit.values()) / (len(docs) - len(size))
    out["all"] = (p, r, f1(p, r))
    return out


def run(name: str, n: int, seed: int, threshold: float, params: MinHashParams) -> None:
    title, make, _ = CORPORA[name]
    docs = make(n, seed)
    texts = [t for t, _, _ in docs]
    kinds = Counter(k for _, _, k in docs)
    paths = [
        ("project", lambda: project(texts, params)),
        ("previous", lambda: previous(texts, params)),
        ("word set", lambda: previous(texts, word_set(threshold))),
        ("textbook", lambda: textbook(texts, threshold, str.split)),
        ("textbook+tokens", lambda: textbook(texts, threshold, word_tokens)),
        ("datasketch bulk", lambda: bulk(texts, threshold)),
    ]
    results = []
    for _, fn in paths:
        started = time.perf_counter()
        removed = fn()
        results.append((score(removed, docs), time.perf_counter() - started))
    print(f"\n== {name} ({title}), seed {seed}: {n} docs, " + ", ".join(
        f"{k} {v}" for k, v in sorted(kinds.items())))  # fmt: skip
    print(f"{'':<22}" + "".join(f"{p:>17}" for p, _ in paths))
    for row in (*[k for k in COPIES if k in results[0][0]], "all"):
        for label, col in (("precision", 0), ("recall", 1), ("F1", 2)):
            cells = "".join(f"{s[row][col]:>17.3f}" for s, _ in results)
            print(f"{row + ' ' + label:<22}{cells}")
    for row in (k for k in NEGATIVES if k in results[0][0]):
        cells = "".join(f"{s[row][0]:>17.3f}" for s, _ in results)
        print(f"{row + ' removed':<22}{cells}")
    print(f"{'docs/s':<22}" + "".join(f"{n / secs:>17.0f}" for _, secs in results))
    secs = [t for _, t in results]
    print(f"speed: project / previous {secs[1] / secs[0]:.2f}x, / textbook "
          f"{secs[3] / secs[0]:.1f}x, / datasketch bulk {secs[5] / secs[0]:.1f}x")  # fmt: skip


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    default = MinHashParams(threshold=Curation.model_fields["near_duplicate_threshold"].default)
    parser.add_argument("--corpus", choices=["all", *CORPORA], default="all")
    parser.add_argument("--n", type=int, default=10000, help="docs in the tickets corpus")
    parser.add_argument("--n-kinds", type=int, default=5000, help="docs in every other corpus")
    parser.add_argument("--threshold", type=float, default=default.threshold)
    parser.add_argument("--seed", type=int, help="one seed for every corpus run")
    parser.add_argument("--words", type=int, default=default.shingle_words)
    parser.add_argument("--chars", type=int, default=default.shingle_chars)
    parser.add_argument("--detail-weight", type=int, default=default.detail_weight)
    parser.add_argument("--quick", action="store_true", help="smoke run: 2000 and 1000 docs")
    parser.add_argument("--no-facts", action="store_true", help="project without the fact check")
    args = parser.parse_args()
    n, n_kinds = (2000, 1000) if args.quick else (args.n, args.n_kinds)
    if min(n, n_kinds) < 10:
        parser.error("corpora need at least 10 docs")
    params = MinHashParams(args.threshold, NUM_PERM, args.words, 1, args.chars, args.detail_weight)
    params = replace(params, check_facts=not args.no_facts)
    # Warm the caches both sides share (datasketch's (b, r) search, permutations), untimed.
    near_duplicates([["warm", "up"], ["warm", "up"]], params)
    near_duplicates([["warm", "up"], ["warm", "up"]], word_set(args.threshold))
    permutations(NUM_PERM, 1)
    bands(args.threshold, NUM_PERM)
    MinHashLSH(threshold=args.threshold, num_perm=NUM_PERM)
    print(
        f"threshold={args.threshold} (Dice; word set: Jaccard)  num_perm={NUM_PERM}  "
        f"project shingles: word {args.words}-grams + char {args.chars}-grams, "
        f"digit shingles x{args.detail_weight}, fact check {'off' if args.no_facts else 'on'}"
    )
    for name in CORPORA if args.corpus == "all" else [args.corpus]:
        size = n if name == "tickets" else n_kinds
        seed = CORPORA[name][2] if args.seed is None else args.seed
        run(name, size, seed, args.threshold, params)
    return 0


if __name__ == "__main__":
    sys.exit(main())
