"""Pure decisions of synth-data: what to generate, what to keep, what it cost.

No I/O here: the plan of a batch (slices, and the student's confusions to aim at), the
residency rule, the majority vote, request hashing and the batch's byte format are all
functions of their arguments, so a redelivered job makes the same decisions and bytes. How a
teacher reply is read (clean_input, check_output) lives with the prompts, in prompts.py.
"""

from __future__ import annotations

import hashlib
import json
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from shared.llm.hosts import AllowList, operator_list, refusal, spec_list
from shared.tasks.spec import TaskSpec, Teacher

NEGATIVE_SLICE = "negative"
SYNTH_SETTING = "SYNTH_DATA_ALLOWED_TEACHER_HOSTS"
# An aimed batch keeps half of it on the slice mix the evaluator judged: all of it on the
# confusions would starve what the student already gets right, and that can regress.
AIM_SHARE = 0.5
MAX_AIMS = 8  # the most frequent confusions; a long tail of one-offs is noise, not a pattern
INVALID = "<invalid>"  # the evaluator's `got` when the student's reply did not parse


@dataclass(frozen=True)
class Aim:
    """Inputs whose right `field` is `expected`, which the student answered `got` (labels only,
    never a golden input). Hosted by the use case that label names, by the negatives when it is
    the decline label, else by any focused use case (`use_case` None)."""

    field: str
    expected: str
    got: str
    count: int
    use_case: str | None = None
    negative: bool = False


@dataclass(frozen=True)
class Planned:
    """One example to generate: its place in the batch and what it should look like."""

    index: int
    use_case: str
    style: str
    negative: bool
    edge_case: str | None = None
    aim: Aim | None = None

    @property
    def slice(self) -> str:
        return NEGATIVE_SLICE if self.negative else self.use_case


@dataclass(frozen=True)
class Focus:
    use_cases: tuple[str, ...]
    negatives: bool
    # True when an iteration named no slice this task has: the whole task is regenerated.
    fallback: bool = False
    aims: tuple[Aim, ...] = ()


def allocate(n: int, weights: dict[str, float]) -> dict[str, int]:
    """Split n by weight (largest remainder, ties by name): counts sum to n."""
    if not weights:
        return {}
    total = sum(weights.values())
    exact = {k: n * w / total for k, w in weights.items()}
    counts = {k: int(v) for k, v in exact.items()}
    for k in sorted(weights, key=lambda k: (-(exact[k] - counts[k]), k))[
        : n - sum(counts.values())
    ]:
        counts[k] += 1
    return counts


def focus(
    spec: TaskSpec,
    failing_slices: Sequence[str] | None = None,
    confusions: Iterable[tuple[str, str, str, int]] = (),
) -> Focus:
    """Which slices to generate (all, or an iteration's failing ones) and what to aim at."""
    names = tuple(u.name for u in spec.use_cases)
    has_negatives = spec.negatives.share > 0
    aims = aims_for(spec, confusions)
    if not failing_slices:
        return Focus(names, has_negatives, aims=aims)
    wanted = set(failing_slices)
    chosen = tuple(n for n in names if n in wanted)
    negatives = has_negatives and NEGATIVE_SLICE in wanted
    if not chosen and not negatives:
        return Focus(names, has_negatives, fallback=True, aims=aims)
    return Focus(chosen, negatives, aims=aims)


def aims_for(spec: TaskSpec, confusions: Iterable[tuple[str, str, str, int]]) -> tuple[Aim, ...]:
    """(field, expected, got, count) confusions -> the MAX_AIMS most frequent, deterministic."""
    keys = set((spec.output_schema or {}).get("properties", {}))
    names = {u.name for u in spec.use_cases}
    # Only a string label marks a decline: a flag like needs_human=true is shared by positives.
    declines_with = {k: v for k, v in spec.negatives.expected.items() if isinstance(v, str)}
    merged: Counter[tuple[str, str, str]] = Counter()
    for field, expected, got, count in confusions:
        if expected != got and (not keys or field in keys):
            merged[(field, expected, got)] += count
    top = sorted(merged.items(), key=lambda item: (-item[1], item[0]))[:MAX_AIMS]
    aims = []
    for (f, e, g), n in top:
        negative = spec.negatives.share > 0 and declines_with.get(f) == e
        aims.append(Aim(f, e, g, n, None if negative or e not in names else e, negative))
    return tuple(aims)


def plan_batch(spec: TaskSpec, scope: Focus, *, edge_case_share: float) -> list[Planned]:
    """spec.synthesis.examples examples over the focused slices, deterministically.

    With aims, AIM_SHARE of the batch goes to them by count, the rest as without. Use cases
    share the positives by weight; negatives take spec.negatives.share (all of the rest when
    only the negative slice is focused). Each slice walks the styles round-robin; every
    1/edge_case_share-th positive of a use case gets the next edge case (an aimed one none).
    Slices are interleaved so a partial batch (and the progress line) is balanced.
    """
    n = spec.synthesis.examples
    aimed = round(n * AIM_SHARE) if scope.aims else 0
    weights = {u.name: u.weight for u in spec.use_cases if u.name in scope.use_cases}
    negatives = 0
    if scope.negatives:
        negatives = round((n - aimed) * spec.negatives.share) if weights else n - aimed
    counts = allocate(n - aimed - negatives, weights)
    if negatives:
        counts[NEGATIVE_SLICE] = negatives
    aims = {f"aim:{i}": aim for i, aim in enumerate(scope.aims)}
    counts.update(allocate(aimed, {name: aim.count for name, aim in aims.items()}))
    order = {name: i for i, name in enumerate([*weights, NEGATIVE_SLICE, *aims])}
    slots = sorted(
        ((i + 0.5) / c, order[name], name, i) for name, c in counts.items() for i in range(c)
    )
    styles = spec.synthesis.styles
    # Negatives borrow a use case's setting, so they resemble real traffic of that kind.
    hosts = list(weights) or [u.name for u in spec.use_cases]
    every = round(1 / edge_case_share) if edge_case_share > 0 and spec.edge_cases else 0
    plan: list[Planned] = []
    edges_used = 0
    for index, (_, slice_no, name, i) in enumerate(slots):
        style = styles[(i + slice_no) % len(styles)]
        if name in aims:
            aim = aims[name]
            home = aim.use_case or hosts[i % len(hosts)]
            plan.append(Planned(index, home, style, negative=aim.negative, aim=aim))
            continue
        if name == NEGATIVE_SLICE:
            plan.append(Planned(index, hosts[i % len(hosts)], style, negative=True))
            continue
        edge = None
        if every and i % every == every - 1:
            edge = spec.edge_cases[edges_used % len(spec.edge_cases)]
            edges_used += 1
        plan.append(Planned(index, name, style, negative=False, edge_case=edge))
    return plan


def residency_lists(
    spec_hosts: Iterable[str], synth_hosts: Iterable[str], platform_hosts: Iterable[str]
) -> tuple[AllowList, ...]:
    """Every list a teacher host must pass: the spec's, the platform's, and the deprecated
    SYNTH_DATA_ALLOWED_TEACHER_HOSTS (empty operator lists restrict nothing)."""
    return (
        spec_list(tuple(spec_hosts)),
        operator_list(tuple(platform_hosts)),
        operator_list(tuple(synth_hosts), SYNTH_SETTING),
    )


def residency_violation(
    teacher: Teacher,
    spec_hosts: Iterable[str],
    synth_hosts: Iterable[str],
    platform_hosts: Iterable[str] = (),
) -> str | None:
    """Why the teacher may not be called, or None. Checked before any request leaves."""
    return refusal(teacher.base_url, residency_lists(spec_hosts, synth_hosts, platform_hosts))


def request_key(
    model: str, messages: Sequence[dict[str, str]], params: dict[str, Any], sample: str | int
) -> str:
    """The cache key: sha256 of canonical JSON of everything that shapes the answer."""
    document = {"model": model, "messages": list(messages), "params": params, "sample": sample}
    return hashlib.sha256(canonical(document).encode()).hexdigest()


def canonical(value: Any) -> str:
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False)


def majority(votes: Sequence[str | None]) -> int | None:
    """Index of the first sample of the strict-majority answer (None votes are invalid)."""
    counts = Counter(v for v in votes if v is not None)
    if not counts:
        return None
    winner, count = counts.most_common(1)[0]
    if count * 2 <= len(votes):
        return None
    return votes.index(winner)


def declines(output: str, expected: dict[str, Any]) -> bool:
    """Whether an answer to a negative looks like the refusal the spec expects."""
    if not expected:
        return True
    try:
        value = json.loads(output)
    except ValueError:
        return False
    return isinstance(value, dict) and all(value.get(k) == v for k, v in expected.items())


def reason_kind(reason: str) -> str:
    return reason.split(":", 1)[0]


def example_id(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


def batch_row(
    planned: Planned, iteration: int, text: str, output: str, usage: tuple[int, int]
) -> dict[str, Any]:
    return {
        "id": example_id(text),
        "use_case": planned.use_case,
        "style": planned.style,
        "negative": planned.negative,
        "edge_case": planned.edge_case,
        "aim": aim_label(planned.aim),
        "iteration": iteration,
        "input": text,
        "output": output,
        "prompt_tokens": usage[0],
        "completion_tokens": usage[1],
    }


def aim_label(aim: Aim | None) -> dict[str, str] | None:
    return {"field": aim.field, "expected": aim.expected, "got": aim.got} if aim else None


def to_jsonl(rows: Iterable[dict[str, Any]]) -> bytes:
    """Sorted keys, fixed separators, plan order: the same rows give the same bytes (and sha)."""
    return b"".join(
        json.dumps(row, sort_keys=True, ensure_ascii=False).encode() + b"\n" for row in rows
    )


def slice_of(row: dict[str, Any]) -> str:
    return NEGATIVE_SLICE if row["negative"] else row["use_case"]


def per_slice(rows: Iterable[dict[str, Any]]) -> dict[str, int]:
    return dict(sorted(Counter(slice_of(r) for r in rows).items()))


def cost_usd(teacher: Teacher, prompt_tokens: int, completion_tokens: int) -> float:
    cost = (
        prompt_tokens * teacher.price_per_1k_prompt_tokens
        + completion_tokens * teacher.price_per_1k_completion_tokens
    ) / 1000
    return round(cost, 6)


def acceptance_problem(
    accepted: int, total: int, min_share: float, reasons: dict[str, int]
) -> str | None:
    """Why the batch is too poor to go on with, or None."""
    if accepted and accepted >= total * min_share:
        return None
    summary = ", ".join(f"{kind}: {n}" for kind, n in sorted(reasons.items())) or "none"
    if not accepted:
        return f"no example passed: {total} planned, rejected by reason: {summary}"
    return (
        f"only {accepted} of {total} examples passed (minimum share {min_share}); "
        f"rejected by reason: {summary}"
    )
