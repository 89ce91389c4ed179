"""A rollout's two arms over its current step, pure: trace rows in, the rule's inputs out.

The candidate's traces are the ones that carry its deployment id (its shadow copies, or the
A/B requests it answered); the live model's are every other answered request of the task in
the same window. Feedback counts for the arm whose answer the client saw, so a shadow copy is
never rated. Agreement pairs each shadow reply with the live reply to the same request: equal
JSON values, or equal text once case and spacing are ignored.
"""

from __future__ import annotations

import json

from shared.events.production import ArmFigures

from .domain import is_negative, normalise
from .stats import Check, answer_check, percentile


def _parsed(text: str) -> object | None:
    try:
        return json.loads(text)
    except ValueError:
        return None


def same_answer(a: str, b: str) -> bool:
    pa, pb = _parsed(a), _parsed(b)
    if pa is not None and pb is not None:
        return pa == pb
    return normalise(a) == normalise(b)


def _arm(rows: list[tuple], check: Check, pairs: list[tuple[str, str]] | None = None) -> ArmFigures:
    answered = [r for r in rows if not r[4]]
    rated = [r for r in rows if r[2] != "shadow" and r[6] is not None]
    return ArmFigures(
        requests=len(rows),
        errors=len(rows) - len(answered),
        rated=len(rated),
        negative=sum(1 for r in rated if is_negative(r[6])),
        structured=len(answered),
        schema_invalid=sum(1 for r in answered if not check(r[5])),
        p95_ms=percentile(sorted(r[3] for r in answered), 95),
        compared=len(pairs or []),
        agreed=sum(1 for a, b in pairs or [] if same_answer(a, b)),
    )


def arms(
    rows: list[tuple], deployment_id: str, *, check: Check | None = None
) -> tuple[ArmFigures, ArmFigures]:
    """(candidate, live) from `repository.arm_window` rows; `check` is the task's answer test
    (`stats.answer_check`; parses as JSON when not given)."""
    check = check or answer_check(None)
    candidate = [r for r in rows if r[1] == deployment_id]
    live = [r for r in rows if r[1] != deployment_id and r[2] != "shadow"]
    live_answer = {r[0]: r[5] for r in live if not r[4]}
    pairs = [
        (r[5], live_answer[r[0]])
        for r in candidate
        if r[2] == "shadow" and not r[4] and r[0] in live_answer
    ]
    return _arm(candidate, check, pairs), _arm(live, check)
