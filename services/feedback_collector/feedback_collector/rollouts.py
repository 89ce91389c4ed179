"""The rollout figures' reporter: `rollout.measured` for each unfinished rollout whose figures
changed, for the deployer's promotion rule. A periodic job (handlers.py), not a stage: the
figures change with every trace, not with one event."""

from __future__ import annotations

from datetime import datetime
from uuid import UUID

from shared.events.base import utcnow
from shared.events.production import RolloutMeasured
from shared.logs import get_logger

from . import repository as repo
from .arms import arms
from .service import Deps, as_utc
from .settings import NAME
from .stats import Check, answer_check
from .tuning import task_spec

log = get_logger(__name__)


async def report_rollouts(deps: Deps, now: datetime | None = None) -> int:
    """`rollout.measured` for every rollout in shadow or A/B whose figures changed, counted
    since the collector recorded its current step; returns how many were sent. Read in one
    short transaction, figured outside any (SQLite's write lock is held by every unit of
    work), published in a second."""
    now = now or utcnow()
    async with deps.db.uow() as uow:
        rollouts = [
            (r.deployment_id, r.task_name, r.stage, r.traffic_share, as_utc(r.updated_at))
            for r in await repo.unfinished_rollouts(uow.session)
        ]
        windows = {r[0]: await repo.arm_window(uow.session, r[1], r[2], r[4]) for r in rollouts}
    checks = {task: await _answer_check(deps, task) for _, task, *_ in rollouts}
    events, said = [], {}
    for deployment_id, task, stage, share, since in rollouts:
        candidate, live = arms(windows[deployment_id], deployment_id, check=checks[task])
        now_said = (stage, share, candidate, live)
        if deps.reported.get(deployment_id) == now_said or candidate.requests == 0:
            continue
        said[deployment_id] = now_said
        events.append(
            RolloutMeasured(
                producer=NAME,
                deployment_id=UUID(deployment_id),
                task_name=task,
                stage=stage,  # type: ignore[arg-type]
                traffic_share=share,
                window_start=since,
                window_end=now,
                candidate=candidate,
                live=live,
            )
        )
    if events:
        async with deps.db.uow() as uow:
            await uow.publish(*events)
            await uow.commit()
    deps.reported.update(said)
    return len(events)


# --- retention ---


async def _answer_check(deps: Deps, task: str) -> Check:
    """The task's schema-valid test; a spec that cannot be read is logged and the test falls
    back to "parses as JSON" (both arms alike, so the rule's comparison holds)."""
    try:
        spec = await task_spec(deps, task)
    except Exception as exc:
        log.warning(
            "task spec unreadable; replies checked as JSON only", task=task, error=repr(exc)
        )
        spec = None
    return answer_check(spec.output_schema if spec else None)
