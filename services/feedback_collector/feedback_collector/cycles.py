"""The retrain policy's use case: a trigger (drift alarm, schedule, new trusted examples)
becomes `cycle.requested` through the outbox, at most once per trigger.

The cycle row (unique trigger), the drift event and the cycle event commit in the caller's
transaction, so an alarm seen again after a crash or a redelivery finds its row and starts
nothing, and a crash before the commit leaves neither the row nor the events.
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime

from sqlalchemy.ext.asyncio import AsyncSession

from shared.db import UnitOfWork
from shared.events import ArtifactRef, Event
from shared.events.catalog import CycleRequested, DriftDetected

from . import repository_cycles as cycles_repo
from .policy import History, Policy, Reason, decide, fits
from .settings import NAME


async def history(session: AsyncSession, task: str, policy: Policy, now: datetime) -> History:
    rows = await cycles_repo.cycles(session, task)
    last = max((r.requested_at.replace(tzinfo=UTC) for r in rows), default=None)
    # Examples count as new once: a cycle records the newest one it included.
    included = max((r.examples_upto for r in rows), default=0)
    stale = now - policy.max_cycle_age
    return History(
        in_flight=any(
            r.finished_at is None and r.requested_at.replace(tzinfo=UTC) >= stale for r in rows
        ),
        last_requested_at=last,
        # The budget caps the cycles this service starts by itself; an operator's do not
        # spend it (they still count as in flight and for the cooldown).
        requested_in_window=sum(
            1
            for r in rows
            if r.reason != "manual"
            and r.requested_at.replace(tzinfo=UTC) >= now - policy.budget_window
        ),
        new_trusted_examples=await cycles_repo.sft_count_after(session, task, included),
    )


def alarm_text(drift: DriftDetected | None) -> str | None:
    return f"{drift.kind} drift: {drift.score:.4g} > {drift.threshold:.4g}" if drift else None


async def request_cycle(
    uow: UnitOfWork,
    task: str,
    policy: Policy,
    *,
    trigger: str,
    drift: DriftDetected | None = None,
    now: datetime | None = None,
    feedback: ArtifactRef | None = None,
    expect: Reason | None = None,
) -> list[Event]:
    """In the caller's transaction: the events a trigger causes (none if the policy says no
    or this trigger already started a cycle). `trigger` names the alarm or schedule slot;
    `feedback`, the feedback dataset the cycle's curation merges. The task's cycles are
    decided under a lock (PostgreSQL; SQLite's writers are serial anyway), so two jobs or
    replicas never both start one. `expect`: start only for this reason."""
    now = now or datetime.now(UTC)
    await cycles_repo.lock_cycles(uow.session, task)
    decision = decide(
        policy, await history(uow.session, task, policy, now), now, drift=alarm_text(drift)
    )
    if not decision.start or decision.reason is None:
        return []
    if expect is not None and not fits(expect, decision.reason):
        return []
    cycle_id = uuid.uuid4()
    values = {
        "cycle_id": str(cycle_id),
        "task_name": task,
        "trigger": trigger,
        "reason": decision.reason,
        "detail": decision.detail,
        "requested_at": now,
        "finished_at": None,
        "examples_upto": await cycles_repo.sft_high_water(uow.session, task),
    }
    if not await cycles_repo.add_cycle(uow.session, values):
        return []
    event = CycleRequested(
        producer=NAME,
        cycle_id=cycle_id,
        task_name=task,
        reason=decision.reason,
        feedback_dataset=feedback,
    )
    return [event] if drift is None else [drift, event]
