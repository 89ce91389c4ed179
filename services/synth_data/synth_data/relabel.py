"""relabel.requested: production inputs answered again by the teacher, for the feedback loop.

The feedback collector sends inputs whose answer a user rated negative without saying what
was right. synth-data owns the teacher client (its residency guard, retries, cost ledger and
response cache), so it answers them here with the production call a synthetic input gets
(self-consistency votes, schema check, repairs) and sends the answered ones back as JSONL in
`relabel.completed`. Outside any cycle: giving up only dead-letters (`ends_cycle=False`).
The response cache is scoped to the request's event id, so a redelivery after a crash pays
for no answer twice.
"""

from __future__ import annotations

import json
from collections import Counter
from dataclasses import dataclass
from functools import partial
from typing import TYPE_CHECKING

from shared.artifacts import ArtifactError
from shared.bus import PermanentError
from shared.db import UnitOfWork
from shared.events import Event
from shared.events.base import ArtifactRef
from shared.events.catalog import RelabelCompleted, RelabelRequested
from shared.runtime.stage import Stage, StageRun
from shared.tasks.load import TaskSpecError, spec_from_json
from shared.tasks.spec import TaskSpec

from . import domain, repository
from .settings import NAME
from .synthesis import Synthesiser, gather_all
from .teacher import refuse_outside_residency, teacher_for

if TYPE_CHECKING:
    from .service import Deps

JSONL = "application/jsonl"


@dataclass(frozen=True)
class Job:
    event: RelabelRequested
    spec: TaskSpec
    inputs: list[tuple[str, str]]  # (id, input)


@dataclass(frozen=True)
class Labels:
    ref: ArtifactRef
    labeled: int
    failed: dict[str, int]


def stage(deps: Deps) -> Stage:
    return Stage(
        "synth",
        RelabelRequested,
        partial(prepare, deps),
        partial(work, deps),
        record,
        ends_cycle=False,
        description="relabel.requested -> the teacher's answers -> relabel.completed",
    )


def parse_inputs(body: bytes, limit: int) -> list[tuple[str, str]]:
    """(id, input) rows; raises ValueError naming the first bad line."""
    rows: list[tuple[str, str]] = []
    for n, line in enumerate(body.decode("utf-8").splitlines(), 1):
        if not line.strip():
            continue
        row = json.loads(line)
        if not (isinstance(row, dict) and isinstance(row.get("id"), str)):
            raise ValueError(f"line {n}: a row needs a string id")
        if not (isinstance(row.get("input"), str) and row["input"].strip()):
            raise ValueError(f"line {n}: a row needs a non-empty input")
        rows.append((row["id"], row["input"]))
    if not rows or len(rows) > limit:
        raise ValueError(f"{len(rows)} inputs; a request holds 1 to {limit}")
    return rows


async def prepare(deps: Deps, event: RelabelRequested, run: StageRun) -> Job:
    try:
        spec = spec_from_json(await deps.artifacts.get_bytes(event.task_spec))
        inputs = parse_inputs(await deps.artifacts.get_bytes(event.inputs), event.count)
    except (ArtifactError, TaskSpecError, UnicodeDecodeError, ValueError) as exc:
        raise PermanentError(f"cannot relabel for {event.task_name}: {exc}") from exc
    if spec.name != event.task_name:
        raise PermanentError(f"the spec is task {spec.name!r}, the request {event.task_name!r}")
    refuse_outside_residency(spec, deps.settings, deps.operator_hosts)
    return Job(event, spec, inputs)


async def work(deps: Deps, job: Job, run: StageRun) -> Labels:
    settings = deps.settings
    scope = str(job.event.event_id)
    cache = repository.DbResponseCache(deps.db, cycle_id=scope, iteration=1)
    async with teacher_for(job.spec, cache, settings, deps.operator_hosts) as teacher:
        synthesiser = Synthesiser(job.spec, teacher, settings, scope=scope, iteration=1)
        outcomes = await gather_all(
            synthesiser.answer(
                domain.Planned(index=i, use_case="relabel", style="production", negative=False),
                text,
            )
            for i, (_, text) in enumerate(job.inputs)
        )
    labels, failed = [], Counter()
    for (row_id, text), outcome in zip(job.inputs, outcomes, strict=True):
        if outcome.output is None:
            failed[domain.reason_kind(outcome.reason or "no answer")] += 1
        else:
            labels.append({"id": row_id, "input": text, "output": outcome.output})
    body = "".join(json.dumps(r, ensure_ascii=False, sort_keys=True) + "\n" for r in labels)
    ref = await deps.artifacts.put_bytes(body.encode(), media_type=JSONL)
    return Labels(ref, len(labels), dict(failed))


async def record(tx: UnitOfWork, job: Job, labels: Labels) -> list[Event]:
    return [
        job.event.caused(
            RelabelCompleted,
            producer=NAME,
            task_name=job.spec.name,
            labels=labels.ref,
            labeled=labels.labeled,
            failed={k[:128]: v for k, v in labels.failed.items()},
        )
    ]
