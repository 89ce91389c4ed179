"""Serving parity: before a candidate takes traffic, what is served must be what was tested.

A sample of golden rows is replayed through the served endpoint exactly as the gateway would
send them (prompts.render: the student prompt, the task's schema, greedy decoding) and each
reply is compared with the one measured for that row on that very variant (the quantizer's
report: `replies[variant]`, decoded with `max_new_tokens`). Replies are compared as JSON values
when both parse (so `{"a": 1}` and `{ "a": 1 }` agree), else as text. More mismatches than the
task's `rollout.parity_tolerance` block the rollout, with the diff. This is where a served
model that differs from the tested one (the wrong file, a tampered one, another chat template,
other decoding) is caught before anyone sees it.

The controller runs `check` each time it starts the server of an unfinished rollout, before
the routes point at it. A check that cannot measure (no report, no replies for the variant, no
golden rows) fails with that reason: it never passes.

GAP (issue 13): an adapter served on vLLM has no recorded replies here (the evaluator keeps
its replies in its results cache), and the controller does not start vLLM servers yet.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from shared.artifacts import ArtifactError, AsyncArtifactStore
from shared.events.base import ArtifactRef
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
    unmeasured: str | None = None  # why nothing could be compared

    @property
    def passed(self) -> bool:
        return self.checked > 0 and len(self.mismatches) <= self.tolerance * self.checked

    def diff(self, limit: int = 10) -> str:
        if self.checked == 0:
            return f"nothing was compared: {self.unmeasured or 'no golden row has a reply'}"
        head = (
            f"{len(self.mismatches)} of {self.checked} replayed golden rows differ from the "
            f"replies measured for this model (tolerance {self.tolerance:.0%})"
        )
        lines = [
            f"- row {m.row_id}: measured {m.recorded[:200]!r}, served {m.served[:200]!r}"
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


def golden_rows(data: bytes) -> list[GoldenRow]:
    """The golden set's ids and inputs (JSON lines), in file order."""
    rows = []
    for n, line in enumerate(data.decode().splitlines(), 1):
        if line.strip():
            item = json.loads(line)
            if not isinstance(item, dict) or not isinstance(item.get("input"), str):
                raise ValueError(f"golden set line {n} has no input")
            rows.append(GoldenRow(str(item["id"]), item["input"]))
    return rows


async def check(
    artifacts: AsyncArtifactStore,
    upstream: Upstream,
    spec: TaskSpec,
    backend: Backend,
    measured: ArtifactRef | None,
    variant: str | None,
) -> ParityResult:
    """Replay `spec.rollout.parity_rows` golden rows through `backend`, the served `variant`,
    against the replies the quantizer's report `measured` records for it."""
    tolerance = spec.rollout.parity_tolerance
    if measured is None or variant is None:
        return ParityResult(0, (), tolerance, "no measured replies are recorded for it")
    try:
        report = json.loads(await artifacts.get_bytes(measured))
        recorded = report["replies"][variant]
        max_tokens = int(report["max_new_tokens"])
        rows = golden_rows(await artifacts.get_bytes(spec.ref("golden_set")))
    except (ArtifactError, KeyError, TypeError, ValueError) as exc:
        return ParityResult(0, (), tolerance, f"the measured replies cannot be read: {exc!r}")
    sample = spread([r for r in rows if r.id in recorded], spec.rollout.parity_rows)
    # One at a time: a llama.cpp server decodes one request at a time anyway, and queued
    # requests would spend their timeout waiting for the others.
    return await replay(
        upstream,
        spec,
        backend,
        sample,
        recorded,
        tolerance=tolerance,
        max_tokens=max_tokens,
        concurrency=1,
    )
