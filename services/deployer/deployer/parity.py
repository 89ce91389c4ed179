"""Serving parity: before a candidate takes traffic, what is served must be what was tested.

A sample of golden rows is replayed through the served endpoint exactly as the gateway would
send them (prompts.render: the student prompt, the task's schema, greedy decoding) and each
reply is compared with the one the evaluator recorded for that row. Replies are compared as
JSON values when both parse (so `{"a": 1}` and `{ "a": 1 }` agree: the same answer, spaced
differently by another engine's grammar), else as text. More mismatches than the tolerance
block the rollout, with the diff. This is where a served adapter that differs from the tested
one (the wrong file, a tampered one, another chat template) is caught before anyone sees it.

GAP (issue 13): the evaluator does not publish its per-row replies yet (they stay in its
results cache); the deployer needs them as an artifact ref on the event it consumes
(`{row_id: reply}` JSON), and the stage must start the candidate's server to replay against.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from shared.tasks.spec import TaskSpec

from .domain import Backend
from .prompts import render
from .upstream import Upstream


@dataclass(frozen=True)
class GoldenRow:
    id: str
    input: str


@dataclass(frozen=True)
class Mismatch:
    row_id: str
    recorded: str
    served: str


@dataclass(frozen=True)
class ParityResult:
    checked: int
    mismatches: tuple[Mismatch, ...]
    tolerance: float  # the share of rows allowed to differ

    @property
    def passed(self) -> bool:
        return self.checked > 0 and len(self.mismatches) <= self.tolerance * self.checked

    def diff(self, limit: int = 10) -> str:
        head = (
            f"{len(self.mismatches)} of {self.checked} replayed golden rows differ from the "
            f"evaluator's replies (tolerance {self.tolerance:.0%})"
        )
        lines = [
            f"- row {m.row_id}: evaluator {m.recorded[:200]!r}, served {m.served[:200]!r}"
            for m in self.mismatches[:limit]
        ]
        more = len(self.mismatches) - limit
        return "\n".join([head, *lines, *([f"... and {more} more"] if more > 0 else [])])


def _value(text: str) -> Any:
    try:
        return ("json", json.loads(text))
    except ValueError:
        return ("text", text.strip())


def same_reply(recorded: str, served: str) -> bool:
    return _value(recorded) == _value(served)


def spread(rows: Sequence[GoldenRow], n: int) -> list[GoldenRow]:
    """`n` rows spread evenly over the set (every row if n >= len): the same ones every time."""
    if n >= len(rows):
        return list(rows)
    step = len(rows) / n
    return [rows[int(i * step)] for i in range(n)]


async def replay(
    upstream: Upstream,
    spec: TaskSpec,
    backend: Backend,
    rows: Sequence[GoldenRow],
    recorded: Mapping[str, str],
    *,
    tolerance: float,
    max_tokens: int = 256,
    concurrency: int = 4,
) -> ParityResult:
    """Replay `rows` (those with a recorded reply) through `backend`; compare every reply."""
    wanted = [r for r in rows if r.id in recorded]
    slots = asyncio.Semaphore(concurrency)

    async def served(row: GoldenRow) -> str:
        body = {"model": spec.name, "messages": [{"role": "user", "content": row.input}]}
        rendered = render({**body, "max_tokens": max_tokens}, spec, backend)
        async with slots:
            reply = await upstream.chat(backend, rendered.body)
        choices = reply.body.get("choices") or [{}]
        return str((choices[0].get("message") or {}).get("content") or "")

    replies = await asyncio.gather(*(served(r) for r in wanted))
    mismatches = tuple(
        Mismatch(row.id, recorded[row.id], reply)
        for row, reply in zip(wanted, replies, strict=True)
        if not same_reply(recorded[row.id], reply)
    )
    return ParityResult(len(wanted), mismatches, tolerance)
