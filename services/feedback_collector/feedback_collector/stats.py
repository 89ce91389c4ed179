"""Online metrics per model version and rollout stage, pure: rows in, figures out.

Served by query (`service.stats`, `distillery feedback stats`), not by event: the deployer's
promotion reads them when it decides, and a figure computed at read time is never stale.
"""

from __future__ import annotations

import json
import math
from collections import defaultdict
from collections.abc import Callable
from dataclasses import asdict, dataclass
from typing import Any

from .domain import is_negative


@dataclass(frozen=True)
class Figures:
    model_version: str
    stage: str
    requests: int
    error_rate: float
    p50_ms: float | None
    p95_ms: float | None
    schema_valid_rate: float | None  # None: the task has no output schema
    negative_rate: float
    escalation_rate: float

    def as_dict(self) -> dict:
        return asdict(self)


def percentile(sorted_values: list[float], q: float) -> float | None:
    """Nearest-rank percentile: an observed latency, never an interpolated one."""
    if not sorted_values:
        return None
    rank = max(1, math.ceil(q / 100 * len(sorted_values)))
    return sorted_values[rank - 1]


Check = Callable[[str], bool]


def answer_check(schema: dict[str, Any] | None) -> Check:
    """Whether a reply is a valid answer: JSON that conforms to the task's output schema; with
    no schema known, JSON at all (what a structured task's reply must be at the least)."""
    validator = None
    if schema is not None:
        from jsonschema import Draft202012Validator

        validator = Draft202012Validator(schema)

    def check(text: str) -> bool:
        try:
            value = json.loads(text)
        except ValueError:
            return False
        return validator is None or validator.is_valid(value)

    return check


def figures(rows: list[tuple], *, check: Check | None = None) -> list[Figures]:
    """`rows` as repository.window returns them; shadow replies are measured like the rest
    (their own arm is their stage's key) but a client never saw them. `check`: the
    schema-valid test (`answer_check`); None for a task whose replies are free text."""
    groups: dict[tuple[str, str], list[tuple]] = defaultdict(list)
    for row in rows:
        version, stage, arm = row[0] or "unknown", row[1] or "none", row[2]
        groups[(version, stage if arm != "shadow" else "shadow")].append(row)
    out = []
    for (version, stage), group in sorted(groups.items()):
        n = len(group)
        errors = sum(1 for r in group if r[4])
        latencies = sorted(r[3] for r in group if not r[4])
        answered = [r[5] for r in group if not r[4]]
        valid = sum(1 for text in answered if check(text)) if check else None
        out.append(
            Figures(
                model_version=version,
                stage=stage,
                requests=n,
                error_rate=errors / n,
                p50_ms=percentile(latencies, 50),
                p95_ms=percentile(latencies, 95),
                schema_valid_rate=(valid / len(answered) if answered else None)
                if valid is not None
                else None,
                negative_rate=sum(1 for r in group if is_negative(r[6])) / n,
                escalation_rate=sum(1 for r in group if r[7]) / n,
            )
        )
    return out
