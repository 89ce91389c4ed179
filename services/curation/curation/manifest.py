"""A published dataset version: deterministic files and the manifest that names them.

Every byte is a function of the curated rows and the options: rows are sorted by id, JSON keys
and separators are fixed, nothing records a time or a host. The same input therefore gives the
same train/validation/rejected artifacts and the same manifest, and `dataset_version` (the
manifest's sha256) names the content.

Rows are rendered with the task's *student* prompt (`TaskSpec.student_prompt`), never the
teacher's instructions: the student is trained, evaluated and served with that one prompt, and
the manifest names it (text and sha256) so the trainer and the evaluator can check they agree.
"""

from __future__ import annotations

import hashlib
import json
from collections import Counter
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

from shared.events.base import ArtifactRef

from .decisions import ReviewDecision
from .domain import Draft, Rejection, Row
from .normalize import chat_row
from .split import stratified_split

FORMAT = "distillery.dataset.v1"
JSONL = "application/jsonl"
MANIFEST_MEDIA_TYPE = "application/vnd.distillery.dataset+json"
TOO_MANY_TOKENS = "too_many_tokens"
# Tokens of one chat row (system, user, assistant) as the trainer encodes it.
TokenCounter = Callable[[list[dict[str, str]]], int]


def jsonl(rows: Iterable[dict[str, Any]]) -> bytes:
    return b"".join(json.dumps(r, ensure_ascii=False).encode() + b"\n" for r in rows)


@dataclass(frozen=True)
class Window:
    """The student's context window, counted with the student's own tokenizer.

    The trainer cuts a longer row to `max_seq_len`, which cuts the answer off and would teach
    half a JSON object: such a row is rejected here, whole, with its length as the reason.
    """

    max_seq_len: int
    count: TokenCounter
    tokenizer: str  # the base model (manifest sha256) whose tokenizer counted


@dataclass(frozen=True)
class Rendered:
    train: list[Row]
    validation: list[Row]
    rejected: list[Rejection]
    files: dict[str, bytes]
    system_prompt: str = ""
    # max_seq_len, tokenizer, longest kept row, rows rejected as too long; None: not counted.
    sequence: dict[str, Any] | None = None
    too_long: list[Rejection] = field(default_factory=list)


def messages(system_prompt: str, row: Row) -> list[dict[str, str]]:
    return chat_row(row.id, row.use_case, row.negative, system_prompt, row.input, row.output)[
        "messages"
    ]


def fit(
    rows: Sequence[Row], system_prompt: str, window: Window
) -> tuple[list[Row], list[Rejection], int]:
    """(rows that fit the window, a rejection per row that does not, longest fitting length)."""
    kept: list[Row] = []
    too_long: list[Rejection] = []
    longest = 0
    for row in rows:
        n = window.count(messages(system_prompt, row))
        if n <= window.max_seq_len:
            kept.append(row)
            longest = max(longest, n)
            continue
        detail = (
            f"{n} tokens with the student prompt > student.max_seq_len {window.max_seq_len} "
            "(the trainer would cut off the answer)"
        )
        too_long.append(
            Rejection(row.id, row.use_case, TOO_MANY_TOKENS, detail, row.input, row.output)
        )
    return kept, too_long, longest


def render(
    draft: Draft, system_prompt: str, validation_share: float, window: Window | None = None
) -> Rendered:
    """The dataset's files; `system_prompt` is the student's. Without a window (no imported
    base model, so no tokenizer to count with) nothing is rejected for length."""
    rows = sorted([*draft.carried, *draft.kept], key=lambda r: r.id)
    too_long: list[Rejection] = []
    sequence = None
    if window is not None:
        rows, too_long, longest = fit(rows, system_prompt, window)
        sequence = {
            "max_seq_len": window.max_seq_len,
            "tokenizer": window.tokenizer,
            "longest": longest,
            TOO_MANY_TOKENS: len(too_long),
        }
    train, validation = stratified_split(rows, validation_share, lambda r: r.slice, lambda r: r.id)
    rejections = [*draft.rejected, *too_long]

    def chat(part: Sequence[Row]) -> bytes:
        return jsonl(
            chat_row(r.id, r.use_case, r.negative, system_prompt, r.input, r.output) for r in part
        )

    rejected = jsonl(
        {
            "id": r.row_id,
            "use_case": r.use_case,
            "reason": r.reason,
            "detail": r.detail,
            "input": r.input,
            "output": r.output,
        }
        for r in rejections
    )
    files = {"train": chat(train), "validation": chat(validation), "rejected": rejected}
    return Rendered(train, validation, rejections, files, system_prompt, sequence, too_long)


def prompt_block(system_prompt: str) -> dict[str, str]:
    """How the manifest names the student prompt (the trainer names it the same way in the
    adapter manifest): the text, and its sha256 for a cheap comparison."""
    return {"text": system_prompt, "sha256": hashlib.sha256(system_prompt.encode()).hexdigest()}


def slice_counts(rows: Sequence[Row]) -> dict[str, int]:
    return dict(sorted(Counter(r.slice for r in rows).items()))


def review_counts(selected: Sequence[str], decisions: Sequence[ReviewDecision]) -> dict[str, int]:
    tally = Counter(d.decision for d in decisions)
    return {
        "selected": len(selected),
        "approved": tally["approved"],
        "edited": tally["edited"],
        "rejected": tally["rejected"],
    }


def build_manifest(
    *,
    task: dict[str, Any],
    cycle_id: str,
    iteration: int,
    draft: Draft,
    rendered: Rendered,
    decisions: Sequence[ReviewDecision],
    refs: dict[str, ArtifactRef],
) -> bytes:
    """Lineage accumulates: the sources of the dataset this one extends, then this draft's."""
    previous = draft.previous
    sources = list(previous["sources"]) if previous else []
    manifest = {
        "format": FORMAT,
        "task": task,
        "cycle_id": cycle_id,
        "iteration": iteration,
        "lineage": {
            "sources": [*sources, draft.source],
            "previous_dataset": (
                {"dataset_version": previous["dataset_version"], "manifest": previous["manifest"]}
                if previous
                else None
            ),
        },
        "counts": {
            "input_rows": draft.input_rows,
            "carried_over": len(draft.carried),
            "kept_new": len(draft.kept),
            "rejected": dict(sorted(Counter(r.reason for r in rendered.rejected).items())),
            "rejected_total": len(rendered.rejected),
            "train": len(rendered.train),
            "validation": len(rendered.validation),
        },
        "slices": {
            "train": slice_counts(rendered.train),
            "validation": slice_counts(rendered.validation),
        },
        "student_prompt": prompt_block(rendered.system_prompt),
        "sequence": rendered.sequence,
        "pii": dict(sorted(draft.pii.items())),
        "review": review_counts(draft.review, decisions),
        "thresholds": draft.options,
        "files": {name: ref.model_dump(mode="json") for name, ref in sorted(refs.items())},
    }
    return json.dumps(manifest, sort_keys=True, indent=2, ensure_ascii=False).encode() + b"\n"
