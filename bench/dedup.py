"""Near-duplicate detection: curation's dedup against the textbook datasketch loop, same run.

A seeded corpus of ticket-like documents is built from sentence templates with random slot
values; a share of them get planted near-duplicates (1-3 word edits: adjacent swaps, filler
insertions, deletions, plus case, punctuation and spacing changes). Ground truth is the
cluster each document came from. Every path processes the same shuffled corpus in the same
order and keeps the first document of a duplicate group:

- project: `curation.dedup.near_duplicates` on `curation.normalize.word_tokens` (NFKC,
  case-folded words), as the curation service runs it;
- textbook: `MinHash()` per doc, `update()` per shingle of `text.split()`, then
  `MinHashLSH.query` and `insert` when nothing is found (the datasketch README loop);
- textbook + project tokens: the same loop on the project's tokens, to separate what
  normalisation buys (recall) from what candidate verification buys (precision);
- datasketch bulk: `MinHash.bulk` (one `update_batch` per doc) on the project's tokens, then
  the same query/insert loop: datasketch used as well as it can be on its own.

A removed document is a true positive when the document it was matched to is in its cluster.
precision = true positives / removed; recall = true positives / (docs - clusters).

    .venv/bin/python bench/dedup.py [--n 10000] [--threshold 0.85] [--seed 7] [--quick]
"""

from __future__ import annotations

import argparse
import random
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
for path in (ROOT, ROOT / "services" / "curation"):
    if str(path) not in sys.path:
        sys.path.insert(0, str(path))

from datasketch import MinHash, MinHashLSH  # noqa: E402

from curation.dedup import MinHashParams, bands, near_duplicates, permutations  # noqa: E402
from curation.normalize import word_tokens  # noqa: E402

NUM_PERM = 128

NAMES = ["Ana", "Ben", "Chloe", "Dmitri", "Elif", "Farah", "Goran", "Hana", "Ivo", "Jun", "Kofi"]
PRODUCTS = [
    "the mobile app",
    "the web dashboard",
    "my smart thermostat",
    "the invoice portal",
    "the desktop client",
    "the API",
    "my router",
    "the payroll module",
    "the shared calendar",
    "the export tool",
    "the billing page",
    "my wireless earbuds",
    "the sync service",
]
ERRORS = [f"E{n:04d}" for n in range(100, 9999, 37)]
BROWSERS = ["Chrome", "Firefox", "Safari", "Edge", "Brave", "Opera"]
SYSTEMS = ["Windows 11", "macOS 14", "Ubuntu 24.04", "Android 15", "iOS 18", "ChromeOS"]
PLANS = ["Basic", "Team", "Business", "Enterprise", "Starter", "Pro"]
TEMPLATES = [
    "Since {date} {product} crashes every time I open the settings page.",
    "I was charged {amount} twice for order {order} and need one charge refunded.",
    "Error {error} appears whenever I try to upload a file larger than {size} MB.",
    "Could you move our account from the {plan} plan to the {plan2} plan before {date}?",
    "{product} stopped syncing with my phone after the last update on {os}.",
    "The password reset email never arrives, I checked spam and waited {minutes} minutes.",
    "Our team of {people} people cannot log in since this morning, we get error {error}.",
    "Please cancel my subscription and confirm in writing that no further fees apply.",
    "The page loads forever in {browser} but works in {browser2} on the same machine.",
    "I need an invoice with our VAT number for order {order} for the accounting team.",
    "Delivery of order {order} was promised for {date} and nothing has arrived yet.",
    "When I export the report to CSV the dates come out in the wrong time zone.",
    "{product} shows a blank screen after login on {os} and {browser}.",
    "Is there a way to add {people} more seats without changing our billing cycle?",
    "The discount code from your newsletter is rejected at checkout with error {error}.",
    "My colleague {name} left the company and we need her files moved to my account.",
    "Notifications from {product} arrive about {minutes} minutes late since last week.",
    "The two factor code is always rejected although the clock on my phone is correct.",
    "We were billed for the {plan} plan although we downgraded to {plan2} on {date}.",
    "Search in {product} returns nothing for files created after {date}.",
    "The battery of {product} drains within {hours} hours even when it is idle.",
    "I would like to know whether you store our data inside the EU or elsewhere.",
    "After changing my email address I can no longer see orders placed before {date}.",
    "The mobile app asks me to update but the store says no update is available.",
    "Printing from {product} cuts off the last column of every table.",
    "Our admin {name} cannot assign roles, the button is greyed out for her.",
    "The refund of {amount} for order {order} was approved but never reached my card.",
    "Uploading photos from {os} fails halfway with a network error each time.",
    "Can you explain the difference between the {plan} and {plan2} plans for a team of {people}?",
    "Every morning at {clock} the service is unavailable for about {minutes} minutes.",
    "The chat widget covers the checkout button on small screens in {browser}.",
    "I accidentally deleted a project yesterday and would like it restored if possible.",
    "Your tracking link for order {order} shows a parcel sent to a different city.",
    "The API returns error {error} for requests with more than {size} items per page.",
    "We keep getting logged out of {product} every {minutes} minutes.",
    "Please add {name} as a second administrator on our {plan} account.",
]
GREETINGS = ["Hello,", "Hi there,", "Dear support,", "Good morning,", "Hey,", ""]
CLOSINGS = [
    "Thanks in advance.",
    "Kind regards,",
    "Thank you for your help.",
    "Best,",
    "Looking forward to your reply.",
    "Cheers,",
    "",
]
FILLERS = ["please", "really", "also", "just", "still", "again", "actually", "now"]


def fill(template: str, rnd: random.Random) -> str:
    plan, plan2 = rnd.sample(PLANS, 2)
    browser, browser2 = rnd.sample(BROWSERS, 2)
    return template.format(
        date=f"{rnd.randint(1, 28)} {rnd.choice(['March', 'April', 'May', 'June', 'July'])}",
        product=rnd.choice(PRODUCTS),
        amount=f"${rnd.randint(5, 900)}.{rnd.randint(0, 99):02d}",
        order=f"#{rnd.randint(10000, 99999)}",
        error=rnd.choice(ERRORS),
        size=rnd.choice([5, 10, 25, 50, 100, 250]),
        plan=plan,
        plan2=plan2,
        os=rnd.choice(SYSTEMS),
        minutes=rnd.randint(2, 90),
        hours=rnd.randint(2, 12),
        people=rnd.randint(2, 80),
        browser=browser,
        browser2=browser2,
        name=rnd.choice(NAMES),
        clock=f"{rnd.randint(5, 11)}:{rnd.choice(['00', '15', '30', '45'])}",
    )


def ticket(rnd: random.Random) -> str:
    body = " ".join(fill(t, rnd) for t in rnd.sample(TEMPLATES, rnd.randint(3, 5)))
    parts = [rnd.choice(GREETINGS), body, rnd.choice(CLOSINGS), rnd.choice(NAMES)]
    return " ".join(p for p in parts if p)


def edit(text: str, rnd: random.Random) -> str:
    """1-3 word edits, plus surface changes that normalisation should see through."""
    words = text.split()
    for _ in range(rnd.randint(1, 3)):
        op = rnd.choice(["swap", "insert", "delete"])
        i = rnd.randrange(1, len(words) - 1)
        if op == "swap":
            words[i], words[i + 1] = words[i + 1], words[i]
        elif op == "insert":
            words.insert(i, rnd.choice(FILLERS))
        else:
            del words[i]
    for _ in range(rnd.randint(1, 4)):
        i = rnd.randrange(len(words))
        surface = rnd.choice(["lower", "upper", "title", "comma", "bang", "strip"])
        w = words[i]
        words[i] = {
            "lower": w.lower(),
            "upper": w.upper(),
            "title": w.title(),
            "comma": w.rstrip(".,!?") + ",",
            "bang": w.rstrip(".,!?") + "!",
            "strip": w.strip(".,!?") or w,
        }[surface]
    return rnd.choice([" ", "  "]).join(words)


def corpus(n: int, seed: int, planted_share: float = 0.25) -> tuple[list[str], list[int]]:
    """n docs and their cluster ids; about planted_share of them are planted variants."""
    rnd = random.Random(seed)
    docs: list[tuple[str, int]] = []
    cluster = 0
    while len(docs) < n:
        base = ticket(rnd)
        docs.append((base, cluster))
        if rnd.random() < planted_share / (1 - planted_share) / 1.5:
            for _ in range(rnd.choice([1, 1, 2])):
                docs.append((edit(base, rnd), cluster))
        cluster += 1
    docs = docs[:n]
    rnd.shuffle(docs)
    return [d for d, _ in docs], [c for _, c in docs]


def shingles(words: Sequence[str], k: int) -> list[str]:
    if len(words) < k:
        return [" ".join(words)] if words else []
    return [" ".join(words[i : i + k]) for i in range(len(words) - k + 1)]


def textbook(texts: Sequence[str], threshold: float, k: int, tokenize: Callable) -> dict[int, int]:
    lsh = MinHashLSH(threshold=threshold, num_perm=NUM_PERM)
    removed: dict[int, int] = {}
    for i, text in enumerate(texts):
        m = MinHash(num_perm=NUM_PERM)
        for s in shingles(tokenize(text), k):
            m.update(s.encode("utf8"))
        hits = lsh.query(m)
        if hits:
            removed[i] = min(hits)
        else:
            lsh.insert(i, m)
    return removed


def bulk(texts: Sequence[str], threshold: float, k: int) -> dict[int, int]:
    """datasketch used well on its own: MinHash.bulk (update_batch per doc), then the same
    query/insert loop."""
    encoded = [[s.encode("utf8") for s in shingles(word_tokens(t), k)] for t in texts]
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


def project(texts: Sequence[str], threshold: float, k: int) -> dict[int, int]:
    params = MinHashParams(threshold=threshold, num_perm=NUM_PERM, shingle_words=k)
    found = near_duplicates([word_tokens(t) for t in texts], params)
    return {j: d.kept for j, d in found.items()}


def score(removed: dict[int, int], clusters: list[int]) -> tuple[float, float]:
    true = sum(1 for j, i in removed.items() if clusters[i] == clusters[j])
    planted = len(clusters) - len(set(clusters))
    precision = true / len(removed) if removed else 1.0
    return precision, true / planted if planted else 1.0


def timed(fn: Callable[[], dict[int, int]]) -> tuple[dict[int, int], float]:
    started = time.perf_counter()
    out = fn()
    return out, time.perf_counter() - started


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--n", type=int, default=10000, help="documents in the corpus")
    parser.add_argument("--threshold", type=float, default=0.85, help="Jaccard threshold")
    parser.add_argument("--seed", type=int, default=7)
    default_k = MinHashParams(threshold=0.85).shingle_words
    parser.add_argument("--shingle", type=int, default=default_k, help="words per shingle")
    parser.add_argument("--quick", action="store_true", help="smoke run: N=2000")
    args = parser.parse_args()
    n = 2000 if args.quick else args.n
    if n < 10:
        parser.error("--n must be at least 10")
    k = args.shingle
    if k < 1:
        parser.error("--shingle must be at least 1")
    texts, clusters = corpus(n, args.seed)
    # Warm the caches both sides share (datasketch's (b, r) search, permutations), untimed.
    bands(args.threshold, NUM_PERM)
    permutations(NUM_PERM, 1)
    MinHashLSH(threshold=args.threshold, num_perm=NUM_PERM)

    runs = [
        ("project (curation.dedup)", lambda: project(texts, args.threshold, k)),
        ("textbook datasketch loop", lambda: textbook(texts, args.threshold, k, str.split)),
        ("textbook + project tokens", lambda: textbook(texts, args.threshold, k, word_tokens)),
        ("datasketch bulk + tokens", lambda: bulk(texts, args.threshold, k)),
    ]
    planted = n - len(set(clusters))
    b, r = bands(args.threshold, NUM_PERM)
    print(
        f"docs={n}  planted near-duplicates={planted}  threshold={args.threshold}  "
        f"num_perm={NUM_PERM}  bands={b}x{r}  shingle={k} word(s)  seed={args.seed}"
    )
    print(f"{'path':<28}{'removed':>8}{'precision':>11}{'recall':>8}{'seconds':>9}{'docs/s':>10}")
    results = []
    for name, fn in runs:
        removed, secs = timed(fn)
        precision, recall = score(removed, clusters)
        results.append(secs)
        print(
            f"{name:<28}{len(removed):>8}{precision:>11.3f}{recall:>8.3f}{secs:>9.2f}"
            f"{n / secs:>10.0f}"
        )
    print(f"{'speed ratio (project / textbook)':<55}{results[1] / results[0]:>10.1f}x")
    print(f"{'speed ratio (project / datasketch bulk)':<55}{results[3] / results[0]:>10.1f}x")
    return 0


if __name__ == "__main__":
    sys.exit(main())
