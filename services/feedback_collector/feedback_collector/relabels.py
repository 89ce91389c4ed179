"""A negative rating with no correction asks the teacher to relabel the input: by event,
through synth-data (which owns the teacher client and its residency guard), never by a call.

1. `queue_relabels`, in the build's transaction: each such input is queued once, scrubbed
   (it leaves for the teacher's host), with the ratings behind it.
2. `request_relabels`, in the feedback-dataset job: up to FEEDBACK_RELABEL_BATCH queued inputs
   of a task (at most FEEDBACK_RELABEL_PER_DAY per 24 h: each is a paid teacher call) go out
   as a JSONL artifact in `relabel.requested`, marked asked in the same transaction. An input
   the teacher did not answer is asked again next round, and one whose request came to
   nothing after FEEDBACK_RELABEL_RETRY_HOURS, up to FEEDBACK_RELABEL_ATTEMPTS times. The
   spec sent is the one the task's reference dataset applied (its teacher, instructions and
   schema); a task without one waits. Queued inputs are deleted with the traces (retention).
3. the `relabel.completed` stage: each answer to an input *this* request asked becomes an
   example trusted as the teacher's, plus a preference pair over the answer that was rated
   down. Answers to anything else (another request's inputs, made-up ids) are ignored.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy.ext.asyncio import AsyncSession

from shared.artifacts import ArtifactError
from shared.bus import PermanentError
from shared.db import UnitOfWork
from shared.events import ArtifactRef, Event
from shared.events.base import utcnow
from shared.events.catalog import RelabelCompleted, RelabelRequested
from shared.logs import get_logger
from shared.runtime.stage import Stage, StageRun

from . import repository as repo
from . import repository_cycles as cycles_repo
from . import repository_relabels as relabels_repo
from .domain import Trace, examples_for, relabel_input, seen_by_client
from .service import Deps, nothing
from .settings import NAME, FeedbackSettings

JSONL = "application/jsonl"
log = get_logger(__name__)


async def queue_relabels(
    session: AsyncSession,
    task: str,
    request_ids: Sequence[str],
    traces: dict[str, Trace],
    feedback: Sequence,
    now: datetime,
) -> None:
    rows = []
    for rid in dict.fromkeys(request_ids):
        text = relabel_input(traces[rid]) if rid in traces else None
        if not text:
            continue  # nothing a teacher could be asked
        ratings = sorted(f.event_id for f in feedback if f.request_id == rid)
        rows.append(
            {
                "request_id": rid,
                "task_name": task,
                "input": text,
                "feedback_ids": ratings,
                "created_at": now,
            }
        )
    await relabels_repo.add(session, rows)


async def request_relabels(
    deps: Deps, task: str, settings: FeedbackSettings, now: datetime
) -> list[Event]:
    retry_before = now - timedelta(hours=settings.relabel_retry_hours)
    attempts = settings.relabel_attempts
    async with deps.db.uow() as uow:
        spent = await relabels_repo.asked_since(uow.session, task, now - timedelta(days=1))
        room = min(settings.relabel_batch, settings.relabel_per_day - spent)
        pending = await relabels_repo.askable(uow.session, task, room, retry_before, attempts)
        spec = (await cycles_repo.reference_specs(uow.session)).get(task)
    if room <= 0 or not pending or spec is None or deps.artifacts is None:
        return []
    body = "".join(json.dumps({"id": r, "input": t}, ensure_ascii=False) + "\n" for r, t in pending)
    # Content-addressed and written first: a crash below leaves an unreferenced copy only.
    inputs = await deps.artifacts.put_bytes(body.encode(), media_type=JSONL)
    event = RelabelRequested(
        producer=NAME,
        task_name=task,
        task_spec=ArtifactRef.model_validate(spec),
        inputs=inputs,
        count=len(pending),
    )
    async with deps.db.uow() as uow:
        ids = [r for r, _ in pending]
        marked = await relabels_repo.mark_asked(
            uow.session, ids, str(event.event_id), now, retry_before, attempts
        )
        if marked != len(ids):
            return []  # another round asked some of them meanwhile: it sends them, not us
        await uow.publish(event)
        await uow.commit()
    return [event]


# --- relabel.completed ---


@dataclass(frozen=True)
class Answered:
    event: RelabelCompleted
    labels: list[tuple[str, str]]  # (request id, the teacher's answer)


def stage(deps: Deps) -> Stage:
    async def prepare(event: RelabelCompleted, run: StageRun) -> Answered:
        try:
            body = await deps.artifacts.get_bytes(event.labels)
            rows = [json.loads(line) for line in body.decode("utf-8").splitlines() if line.strip()]
        except (ArtifactError, UnicodeDecodeError, ValueError) as exc:
            raise PermanentError(f"relabels for {event.task_name} unreadable: {exc}") from exc
        labels = [
            (r["id"], r["output"])
            for r in rows
            if isinstance(r, dict)
            and isinstance(r.get("id"), str)
            and isinstance(r.get("output"), str)
        ]
        return Answered(event, labels)

    return Stage(
        "rollout",
        RelabelCompleted,
        prepare=prepare,
        work=nothing,
        record=record_relabels,
        ends_cycle=False,
        description="relabel.completed -> examples trusted as the teacher's",
    )


async def record_relabels(uow: UnitOfWork, job: Answered, _: None) -> list[Event]:
    event, now, session = job.event, utcnow(), uow.session
    asked = await relabels_repo.asked_by(session, event.task_name, str(event.causation_id))
    ours = [(rid, text) for rid, text in job.labels if rid in asked]
    traces, _ = seen_by_client(await repo.traces_for(session, {rid for rid, _ in ours}))
    examples = []
    for rid, text in ours:
        await relabels_repo.answer(session, rid, text, now)
        if rid in traces:  # else its trace was swept meanwhile: the answer is kept, no example
            examples += examples_for(traces[rid], text, tuple(asked[rid]), "teacher")
    await repo.add_examples(session, [ex.row(event.task_name, now) for ex in examples])
    answered = {rid for rid, _ in ours}
    await relabels_repo.release(session, [rid for rid in asked if rid not in answered])
    if len(ours) < len(job.labels):
        log.warning(
            "relabels ignored: not asked by this request",
            task=event.task_name,
            ignored=len(job.labels) - len(ours),
        )
    return []
