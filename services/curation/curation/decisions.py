"""Expert review decisions, pure: what approving, editing or rejecting a queued row does."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import Literal

from shared.text.pii import Scrubber

from .domain import Draft, Rejection, Row, scrub_row
from .filters import QualityRules
from .normalize import normalise_output

Decision = Literal["approved", "edited", "rejected"]


@dataclass(frozen=True)
class ReviewDecision:
    row_id: str
    decision: Decision
    output: str | None = None
    reason: str | None = None


def apply_decisions(draft: Draft, decisions: Sequence[ReviewDecision]) -> Draft:
    """The draft after review: edited outputs replace the teacher's, rejected rows leave."""
    by_id = {d.row_id: d for d in decisions}
    missing = [i for i in draft.review if i not in by_id]
    if missing:
        raise ValueError(f"{len(missing)} review(s) still pending, e.g. {missing[0]}")
    kept, rejected = [], list(draft.rejected)
    for row in draft.kept:
        d = by_id.get(row.id)
        if d is None or d.decision == "approved":
            kept.append(row)
        elif d.decision == "edited":
            kept.append(Row(row.id, row.use_case, row.negative, row.input, d.output or ""))
        else:
            reason = d.reason or "rejected by a reviewer"
            rejected.append(
                Rejection(row.id, row.use_case, "review_rejected", reason, row.input, row.output)
            )
    rejected.sort(key=lambda r: (r.reason, r.row_id))
    return replace(draft, kept=kept, rejected=rejected)


def edited_output(
    text: str, negative: bool, rules: QualityRules, scrubbers: Sequence[Scrubber] | None = None
) -> str:
    """A reviewer's output, held to the teacher's rules; ValueError names the one it breaks.

    Normalised and scrubbed like the teacher's: a reviewer pasting a customer's e-mail into a
    correction must not put it into training data.
    """
    output = normalise_output(text, rules.structured)
    verdict = rules.check_output(output, negative)
    if verdict:
        raise ValueError(f"{verdict.reason}: {verdict.detail}")
    return scrub_row(Row("", "", negative, "", output), rules.structured, scrubbers)[0].output
