"""Pure decisions of synth-data: what to generate, what to keep, what it cost.

No I/O here: the plan of a batch, the residency rule, output checks, the majority vote,
request hashing and the batch's byte format are all functions of their arguments, so a
redelivered job makes the same decisions and the same bytes.
"""

from __future__ import annotations

import functools
import hashlib
import json
import re
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from jsonschema import Draft202012Validator

from shared.llm.hosts import AllowList, operator_list, refusal, spec_list
from shared.tasks.spec import TaskSpec, Teacher

NEGATIVE_SLICE = "negative"
SYNTH_SETTING = "SYNTH_DATA_ALLOWED_TEACHER_HOSTS"
_FENCE = re.compile(r"^```[\w-]*\s*\n?(.*?)\n?```$", re.DOTALL)


@dataclass(frozen=True)
class Planned:
    """One example to generate: its place in the batch and what it should look like."""

    index: int
    use_case: str
    style: str
    negative: bool
    edge_case: str | None = None

    @property
    def slice(self) -> str:
        return NEGATIVE_SLICE if self.negative else self.use_case


@dataclass(frozen=True)
class Focus:
    use_cases: tuple[str, ...]
    negatives: bool
    # True when an iteration named no slice this task has: the whole task is regenerated.
    fallback: bool = False


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


def focus(spec: TaskSpec, failing_slices: Sequence[str] | None = None) -> Focus:
    """Which slices to generate: all of them, or only the failing ones of an iteration."""
    names = tuple(u.name for u in spec.use_cases)
    has_negatives = spec.negatives.share > 0
    if not failing_slices:
        return Focus(names, has_negatives)
    wanted = set(failing_slices)
    chosen = tuple(n for n in names if n in wanted)
    negatives = has_negatives and NEGATIVE_SLICE in wanted
    if not chosen and not negatives:
        return Focus(names, has_negatives, fallback=True)
    return Focus(chosen, negatives)


def plan_batch(spec: TaskSpec, scope: Focus, *, edge_case_share: float) -> list[Planned]:
    """spec.synthesis.examples examples over the focused slices, deterministically.

    Use cases share the positives by weight; negatives take spec.negatives.share (all of the
    batch when only the negative slice is focused). Each slice walks the styles round-robin;
    every 1/edge_case_share-th positive of a use case gets the next edge case. Slices are
    interleaved so a partial batch (and the progress line) is balanced.
    """
    n = spec.synthesis.examples
    weights = {u.name: u.weight for u in spec.use_cases if u.name in scope.use_cases}
    negatives = 0
    if scope.negatives:
        negatives = round(n * spec.negatives.share) if weights else n
    counts = allocate(n - negatives, weights)
    if negatives:
        counts[NEGATIVE_SLICE] = negatives
    order = {name: i for i, name in enumerate([*weights, NEGATIVE_SLICE])}
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


def clean_input(text: str) -> str:
    """The written input without the wrapping a chat model likes to add."""
    text = text.strip()
    fenced = _FENCE.match(text)
    if fenced:
        text = fenced.group(1).strip()
    if len(text) >= 2 and text[0] == text[-1] and text[0] in "\"'":
        text = text[1:-1].strip()
    return text


@dataclass(frozen=True)
class Checked:
    """A teacher answer judged against the task: the output to keep, or why not."""

    output: str | None
    vote: str | None  # canonical form, what self-consistency compares
    error: str | None


def check_output(text: str, schema: dict[str, Any] | None) -> Checked:
    text = text.strip()
    if schema is None:
        if not text:
            return Checked(None, None, "empty: the answer is blank")
        return Checked(text, " ".join(text.split()), None)
    value, problem = _parse_json(text)
    if problem:
        return Checked(None, None, problem)
    errors = sorted(_validator(canonical(schema)).iter_errors(value), key=_error_order)
    if errors:
        first = errors[0]
        where = "$" + "".join(f"[{p!r}]" if isinstance(p, int) else f".{p}" for p in first.path)
        more = f" (and {len(errors) - 1} more)" if len(errors) > 1 else ""
        return Checked(None, None, f"schema: {where}: {first.message}{more}")
    # The student learns this exact text: one JSON object, the teacher's key order.
    return Checked(json.dumps(value, ensure_ascii=False), canonical(value), None)


def _parse_json(text: str) -> tuple[Any, str | None]:
    candidates = [text]
    fenced = _FENCE.match(text)
    if fenced:
        candidates.append(fenced.group(1))
    start, end = text.find("{"), text.rfind("}")
    if 0 <= start < end:
        candidates.append(text[start : end + 1])  # prose around one object
    for candidate in candidates:
        try:
            return json.loads(candidate), None
        except ValueError:
            continue
    shown = text[:80] + ("..." if len(text) > 80 else "")
    return None, f"not JSON: the answer {shown!r} is not a JSON document"


def _error_order(error: Any) -> tuple[int, str]:
    return (len(error.path), error.message)


@functools.lru_cache(maxsize=32)
def _validator(schema_json: str) -> Draft202012Validator:
    return Draft202012Validator(json.loads(schema_json))


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
        "iteration": iteration,
        "input": text,
        "output": output,
        "prompt_tokens": usage[0],
        "completion_tokens": usage[1],
    }


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
