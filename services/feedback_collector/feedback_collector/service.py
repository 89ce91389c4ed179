"""Use cases: ingest (batched), the rollout stage, retention, training data, stats, cycles.

Feedback that arrives before its trace is stored at once with `matched_at` null, and matched
when the trace lands (in the trace batch's own transaction). It is not NAKed: a delayed NAK
in a batch would send the whole batch to the one-by-one fallback and burn `max_deliver`
until the feedback was dead-lettered, i.e. dropped, if the gateway's trace buffer lagged.
A table keeps it for `pending_feedback_days`; after that it is recorded as a rejection
(reason trace_missing), never silently lost.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

from shared.artifacts import AsyncArtifactStore
from shared.db import Database, UnitOfWork
from shared.events import (
    CycleFailed,
    CycleRequested,
    DatasetPublished,
    Event,
    FeedbackRecorded,
    RolloutChanged,
    TrafficLogged,
)
from shared.logs import get_logger
from shared.runtime.stage import Stage, StageRun

from . import repository as repo
from . import repository_cycles as cycles_repo
from . import repository_relabels as relabels_repo
from .settings import NAME, FeedbackSettings
from .stats import Check, Figures, figures

log = get_logger(__name__)


@dataclass
class Deps:
    db: Database
    settings: FeedbackSettings
    # Where feedback datasets are written (datasets.py); None: no dataset is published.
    artifacts: AsyncArtifactStore | None = None
    # What rollout.measured last said per deployment, so unchanged figures are not sent again.
    reported: dict[str, tuple] = field(default_factory=dict)


def _now() -> datetime:
    return datetime.now(UTC)


# --- ingest (the batched consumers' handlers) ---


def trace_row(e: TrafficLogged, stage: str | None = None) -> dict:
    """The row a trace is stored as; `stage` when the event carries none."""
    return {
        "event_id": str(e.event_id),
        "request_id": str(e.request_id),
        "task_name": e.task_name,
        "deployment_id": str(e.deployment_id) if e.deployment_id else None,
        "arm": e.arm,
        "model_version": e.model_version,
        "stage": e.stage or stage,
        "messages": [m.model_dump() for m in e.messages],
        "completion": e.completion,
        "latency_ms": e.latency_ms,
        "ttft_ms": e.ttft_ms,
        "prompt_tokens": e.prompt_tokens,
        "completion_tokens": e.completion_tokens,
        "prompt_source": e.prompt_source,
        "error": e.error,
        "occurred_at": e.occurred_at,
    }


async def ingest_traces(uow: UnitOfWork, events: list[TrafficLogged]) -> None:
    now = _now()
    session = uow.session
    missing = {str(e.deployment_id) for e in events if e.stage is None and e.deployment_id}
    stages = await repo.stages_of(session, missing)
    await repo.add_traces(session, [trace_row(e, stages.get(str(e.deployment_id))) for e in events])
    await repo.lock_matching(session)
    await repo.match_pending(session, {str(e.request_id) for e in events}, now)


async def ingest_feedback(uow: UnitOfWork, events: list[FeedbackRecorded]) -> None:
    now = _now()
    await repo.lock_matching(uow.session)
    there = await repo.traced(uow.session, {str(e.request_id) for e in events})
    await repo.add_feedback(
        uow.session,
        [
            {
                "event_id": str(e.event_id),
                "request_id": str(e.request_id),
                "task_name": e.task_name,
                "rating": e.rating,
                "correction": e.correction,
                "comment": e.comment,
                "escalate": e.escalate,
                "user_id": e.user_id,
                "key_id": e.key_id,
                "occurred_at": e.occurred_at,
                "received_at": now,
                "matched_at": now if str(e.request_id) in there else None,
                "used_at": None,
            }
            for e in events
        ],
    )


# --- the rollout stage: keeps each deployment's stage, closes the cycle it belongs to ---


async def as_is(event: Event, run: StageRun) -> Event:
    return event


async def nothing(event: Event, run: StageRun) -> None:
    return None


async def record_rollout(uow: UnitOfWork, event: RolloutChanged, _: None) -> list[Event]:
    now = _now()
    await repo.upsert_rollout(
        uow.session,
        {
            "deployment_id": str(event.deployment_id),
            "task_name": event.task_name,
            "stage": event.stage,
            "model_sha256": event.model.sha256,
            "traffic_share": event.traffic_share,
            "updated_at": now,
        },
    )
    # A cycle is over once its candidate is fully live or rolled back.
    if event.cycle_id and event.stage in ("full", "rolled_back"):
        await cycles_repo.finish_cycle(uow.session, str(event.cycle_id), event.task_name, now)
    return []


def stages(deps: Deps) -> list[Stage]:
    return [
        Stage(
            "rollout",
            RolloutChanged,
            prepare=as_is,
            work=nothing,
            record=record_rollout,
            # Bookkeeping for metrics: failing it must not end anybody's cycle.
            ends_cycle=False,
        ),
        # Input drift's reference: the task's latest dataset (watch.py reads its train split).
        Stage(
            "rollout",
            DatasetPublished,
            prepare=as_is,
            work=nothing,
            record=record_reference,
            ends_cycle=False,
        ),
        Stage(
            "rollout",
            CycleFailed,
            prepare=as_is,
            work=nothing,
            record=record_failed_cycle,
            ends_cycle=False,
        ),
        # Every cycle of a task counts for the retrain policy, not only the ones asked here.
        # From now: replayed history would record cycles whose ends were consumed long ago.
        Stage(
            "rollout",
            CycleRequested,
            prepare=as_is,
            work=nothing,
            record=record_started_cycle,
            ends_cycle=False,
            from_now=True,
        ),
    ]


async def record_reference(uow: UnitOfWork, event: DatasetPublished, _: None) -> list[Event]:
    values = {
        "task_name": event.task_name,
        "dataset_version": event.dataset_version,
        "train": event.train.model_dump(mode="json"),
        "task_spec": event.task_spec.model_dump(mode="json"),
        # The producer's clock, but never ahead of ours: a stamp from the future would pin
        # this reference against every later dataset.
        "published_at": min(as_utc(event.occurred_at), _now()),
    }
    await cycles_repo.set_reference(uow.session, values)
    return []


async def record_started_cycle(uow: UnitOfWork, event: CycleRequested, _: None) -> list[Event]:
    if event.producer == NAME:
        return []  # ours: its row was written with the event
    now = _now()
    values = {
        "cycle_id": str(event.cycle_id),
        "task_name": event.task_name,
        "trigger": f"started:{event.cycle_id}",
        "reason": event.reason,
        "detail": f"started by {event.producer}",
        "requested_at": min(as_utc(event.occurred_at), now),
        "finished_at": None,
        "examples_upto": 0,  # it carries no feedback dataset of ours
    }
    await cycles_repo.add_started_cycle(uow.session, values)
    return []


async def record_failed_cycle(uow: UnitOfWork, event: CycleFailed, _: None) -> list[Event]:
    # A failed cycle frees its task for the retrain policy (one in flight per task).
    await cycles_repo.finish_cycle(uow.session, str(event.cycle_id), event.task_name, _now())
    return []


# --- online figures of unfinished rollouts, for the deployer's rule ---


def as_utc(moment: datetime) -> datetime:
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)  # SQLite drops the zone


async def sweep(deps: Deps, now: datetime | None = None) -> int:
    """Delete traces (and inputs queued for relabelling) past retention; give up on feedback
    whose trace never came."""
    now = now or _now()
    s = deps.settings
    async with deps.db.uow() as uow:
        # Matched under the ingest consumers' lock, and before retention deletes a trace that
        # feedback waiting for it would have found.
        await repo.lock_matching(uow.session)
        await repo.match_all_pending(uow.session, now)
        retention = now - timedelta(days=s.trace_retention_days)
        deleted = await repo.delete_traces_before(uow.session, retention)
        await relabels_repo.delete_before(uow.session, retention)
        cutoff = now - timedelta(days=s.pending_feedback_days)
        stale = await repo.pending_before(uow.session, cutoff)
        await repo.add_rejections(
            uow.session,
            [rejection_row(f, "trace_missing", "its trace never arrived", now) for f in stale],
        )
        await repo.mark_used(uow.session, [f.event_id for f in stale], now)
        await uow.commit()
    return deleted


def rejection_row(f, reason: str, detail: str, now: datetime) -> dict:
    return {
        "feedback_event_id": f.event_id,
        "request_id": f.request_id,
        "task_name": getattr(f, "task_name", None),
        "user_id": f.user_id,
        "key_id": f.key_id,
        "reason": reason,
        "detail": detail,
        "recorded_at": now,
    }


# --- metrics ---


async def stats(
    db: Database, task: str, since: datetime, *, check: Check | None = None
) -> list[Figures]:
    async with db.uow() as uow:
        rows = await repo.window(uow.session, task, since)
    return figures(rows, check=check)
