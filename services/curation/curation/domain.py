"""Curation decisions, pure: rows in, a draft dataset (kept, rejected, queued for review) out.

The order of the steps is deliberate and differs from the one-line summary in the design:
quality filters run before dedup, so a broken row never survives as the "first" of a duplicate
pair and knocks out its good twin; decontamination runs before PII scrubbing, so a golden input
quoted with its e-mail address is still recognised; the optional LLM judge runs last, on the
rows that survived everything else, because it is the only step that costs money.

    normalise -> quality -> exact dup -> near dup -> decontaminate -> scrub PII -> judge -> review
"""

from __future__ import annotations

import hashlib
import json
import math
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

from shared.text.pii import Scrubber, scrub

from .decontam import GoldenIndex
from .dedup import MinHashParams, exact_duplicates, near_duplicates
from .filters import QualityRules
from .normalize import dump_json, map_strings, normalise_output, normalise_text, parse_json
from .split import rank

REASONS = (
    "malformed",
    "empty",
    "too_short",
    "too_long",
    "schema_invalid",
    "negative_mismatch",
    "garbage",
    "exact_duplicate",
    "near_duplicate",
    "contaminated",
    "judge_low_score",
    "review_rejected",
    "too_many_tokens",  # at publication, against student.max_seq_len (manifest.Window)
)
# Scores in 0..1, one per row; None: the judge gave no grade, so the row is not held against it.
Judge = Callable[[Sequence["Row"]], list[float | None]]


# Ids of rows that came from production feedback (curation's service prefixes them).
FEEDBACK_PREFIX = "feedback:"


@dataclass(frozen=True)
class Row:
    id: str
    use_case: str
    negative: bool
    input: str
    output: str

    @property
    def slice(self) -> str:
        """The evaluator's slices: use-case names, and "negative" for every negative row."""
        return "negative" if self.negative else self.use_case


@dataclass(frozen=True)
class Rejection:
    row_id: str
    use_case: str
    reason: str
    detail: str
    input: str = ""
    output: str = ""


@dataclass(frozen=True)
class Options:
    """Everything that changes the outcome; recorded in the manifest as `thresholds`."""

    near_duplicate_threshold: float
    min_chars: int
    max_chars: int
    decontamination_ngram: int
    validation_share: float
    review_share: float
    judge: bool = False
    judge_min_score: float = 0.6
    num_perm: int = 128
    shingle_words: int = 3
    minhash_seed: int = 1
    shingle_chars: int = 3
    detail_weight: int = 4

    def minhash(self) -> MinHashParams:
        return MinHashParams(
            threshold=self.near_duplicate_threshold,
            num_perm=self.num_perm,
            shingle_words=self.shingle_words,
            seed=self.minhash_seed,
            shingle_chars=self.shingle_chars,
            detail_weight=self.detail_weight,
        )


@dataclass
class Draft:
    """The outcome of curating one source, before any review decision."""

    kept: list[Row]
    rejected: list[Rejection]
    review: list[str]
    pii: dict[str, int]
    input_rows: int
    carried: list[Row] = field(default_factory=list)
    # Set by the service: where the rows came from, the dataset they extend, the options used.
    # Kept in the draft so a publish after review (another process) rebuilds the same manifest.
    source: dict[str, Any] = field(default_factory=dict)
    previous: dict[str, Any] | None = None
    options: dict[str, Any] = field(default_factory=dict)

    def to_json(self) -> bytes:
        return json.dumps(asdict(self), sort_keys=True, ensure_ascii=False).encode()

    @classmethod
    def from_json(cls, data: bytes) -> Draft:
        raw = json.loads(data)
        return cls(
            kept=[Row(**r) for r in raw["kept"]],
            rejected=[Rejection(**r) for r in raw["rejected"]],
            review=list(raw["review"]),
            pii=dict(raw["pii"]),
            input_rows=int(raw["input_rows"]),
            carried=[Row(**r) for r in raw["carried"]],
            source=raw["source"],
            previous=raw["previous"],
            options=raw["options"],
        )


def scrub_row(
    row: Row, structured: bool, scrubbers: Sequence[Scrubber] | None
) -> tuple[Row, Counter]:
    text_in, counts = scrub(row.input, scrubbers)
    ok, value = parse_json(row.output) if structured else (False, None)
    if ok:
        found: Counter[str] = Counter()

        def leaf(s: str) -> str:
            out, n = scrub(s, scrubbers)
            found.update(n)
            return out

        text_out = dump_json(map_strings(value, leaf))
    else:
        text_out, found = scrub(row.output, scrubbers)
    return Row(row.id, row.use_case, row.negative, text_in, text_out), counts + found


def curate(
    rows: Sequence[Row],
    rules: QualityRules,
    golden: GoldenIndex,
    options: Options,
    carried: Sequence[Row] = (),
    judge: Judge | None = None,
    scrubbers: Sequence[Scrubber] | None = None,
) -> Draft:
    """Curate new `rows`; `carried` rows (a previous dataset of the cycle) stay and win dedup."""
    rejected: list[Rejection] = []

    def reject(row: Row, reason: str, detail: str) -> None:
        clean_in, _ = scrub(row.input, scrubbers)
        clean_out, _ = scrub(row.output, scrubbers)
        clean_detail, _ = scrub(detail, scrubbers)
        rejected.append(Rejection(row.id, row.use_case, reason, clean_detail, clean_in, clean_out))

    # Sorted by content, so the outcome does not depend on the order the teacher answered in;
    # production feedback first, so dedup keeps a corroborated correction over a synthetic row.
    ordered = sorted(rows, key=lambda r: (not r.id.startswith(FEEDBACK_PREFIX), r.id, r.output))
    survivors: list[Row] = []
    for row in ordered:
        row = Row(
            row.id,
            normalise_text(row.use_case),
            row.negative,
            normalise_text(row.input),
            normalise_output(row.output, rules.structured),
        )
        verdict = rules.check(row.input, row.output, row.negative)
        if verdict:
            reject(row, verdict.reason, verdict.detail)
        else:
            survivors.append(row)

    pool = [*carried, *survivors]
    keys = [hashlib.sha256(r.input.encode()).hexdigest() for r in pool]
    exact = exact_duplicates(keys, protected=len(carried))
    unique = [i for i in range(len(pool)) if i not in exact]
    near = near_duplicates([pool[i].input for i in unique], options.minhash(), len(carried))
    for i, of in exact.items():
        reject(pool[i], "exact_duplicate", f"same input as {pool[of].id}")
    for j, dup in near.items():
        kept = pool[unique[dup.kept]]
        reject(pool[unique[j]], "near_duplicate", f"{dup.similarity:.2f} similar to {kept.id}")
    removed = {unique[j] for j in near} | set(exact)
    fresh = [pool[i] for i in range(len(carried), len(pool)) if i not in removed]

    clean: list[Row] = []
    pii: Counter[str] = Counter()
    for row in fresh:
        hit = golden.match(row.input, row.output)
        if hit:
            reject(row, "contaminated", f"shares {golden.n}-gram {hit[1]!r} with golden {hit[0]}")
            continue
        scrubbed, found = scrub_row(row, rules.structured, scrubbers)
        pii.update(found)
        clean.append(scrubbed)

    if judge is not None and clean:
        scores = judge(clean)
        judged = []
        for row, score in zip(clean, scores, strict=True):
            if score is not None and score < options.judge_min_score:
                reject(row, "judge_low_score", f"score {score:.2f} < {options.judge_min_score}")
            else:
                judged.append(row)
        clean = judged

    return Draft(
        kept=clean,
        rejected=sorted(rejected, key=lambda r: (r.reason, r.row_id)),
        review=select_for_review(clean, options.review_share),
        pii=dict(sorted(pii.items())),
        input_rows=len(rows),
        carried=list(carried),
    )


def select_for_review(rows: Sequence[Row], share: float) -> list[str]:
    """ceil(share * n) row ids, chosen by hash: the same rows whatever the order or the run."""
    if share <= 0 or not rows:
        return []
    count = min(len(rows), math.ceil(share * len(rows)))
    return sorted(r.id for r in sorted(rows, key=lambda r: rank("review", r.id))[:count])


def rejection_summary(rejected: Sequence[Rejection], top: int = 3) -> str:
    counts = Counter(r.reason for r in rejected)
    parts = [f"{reason} {n}" for reason, n in counts.most_common(top)]
    return ", ".join(parts) if parts else "no input rows"
