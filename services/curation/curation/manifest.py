"""A published dataset version: deterministic files and the manifest that names them.

Every byte is a function of the curated rows and the options: rows are sorted by id, JSON keys
and separators are fixed, nothing records a time or a host. The same input therefore gives the
same train/validation/rejected artifacts and the same manifest, and `dataset_version` (the
manifest's sha256) names the content.
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from shared.events.base import ArtifactRef

from .decisions import ReviewDecision
from .domain import Draft, Rejection, Row
from .normalize import chat_row
from .split import stratified_split

FORMAT = "distillery.dataset.v1"
JSONL = "application/jsonl"
MANIFEST_MEDIA_TYPE = "application/vnd.distillery.dataset+json"


def jsonl(rows: Iterable[dict[str, Any]]) -> bytes:
    return b"".join(json.dumps(r, ensure_ascii=False).encode() + b"\n" for r in rows)


@dataclass(frozen=True)
class Rendered:
    train: list[Row]
    validation: list[Row]
    rejected: list[Rejection]
    files: dict[str, bytes]


def render(draft: Draft, instructions: str, validation_share: float) -> Rendered:
    rows = sorted([*draft.carried, *draft.kept], key=lambda r: r.id)
    train, validation = stratified_split(rows, validation_share, lambda r: r.slice, lambda r: r.id)

    def chat(part: Sequence[Row]) -> bytes:
        return jsonl(
            chat_row(r.id, r.use_case, r.negative, instructions, r.input, r.output) for r in part
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
        for r in draft.rejected
    )
    files = {"train": chat(train), "validation": chat(validation), "rejected": rejected}
    return Rendered(train, validation, list(draft.rejected), files)


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
        "pii": dict(sorted(draft.pii.items())),
        "review": review_counts(draft.review, decisions),
        "thresholds": draft.options,
        "files": {name: ref.model_dump(mode="json") for name, ref in sorted(refs.items())},
    }
    return json.dumps(manifest, sort_keys=True, indent=2, ensure_ascii=False).encode() + b"\n"
