"""The `promotion` stage: the feedback-collector's `rollout.measured` in, the rollout rule
(rollout.decide) applied, the next step (or the rollback) and its `rollout.changed` out.

Figures name the step they were counted for (stage and share). Figures of a step the rollout
has already left (the collector has not seen the change yet, or a redelivery after this stage
moved it on) are claimed and answered with nothing: a decision is only ever taken on its own
step's numbers. The new state is written under the row's revision in the claim's
transaction, so a redelivered event decides once, and an operator's command racing it wins or
loses whole (StaleRevision: the event is retried and meets the new step).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from functools import partial

from shared.db import UnitOfWork
from shared.events import Event
from shared.events.production import ArmFigures, RolloutChanged, RolloutMeasured
from shared.logs import get_logger
from shared.runtime.stage import Stage, StageRun

from . import repository as repo
from .rollout import ArmStats, Policy, decide
from .settings import NAME

log = get_logger(__name__)
PolicyOf = Callable[[repo.Deployment], Awaitable[Policy]]


@dataclass(frozen=True)
class Step:
    event: RolloutMeasured
    deployment: repo.Deployment | None  # None: unknown, or figures of another step
    policy: Policy | None


def _stats(figures: ArmFigures) -> ArmStats:
    return ArmStats(**figures.model_dump())


def same_step(event: RolloutMeasured, deployment: repo.Deployment) -> bool:
    return (
        event.stage == deployment.rollout.stage
        and abs(event.traffic_share - deployment.share) < 1e-9
    )


async def prepare(db, policy_of: PolicyOf, event: RolloutMeasured, run: StageRun) -> Step:
    deployment = await repo.get_deployment(db, event.deployment_id)
    if deployment is None or not same_step(event, deployment):
        log.info("figures of another step; nothing to decide", deployment=str(event.deployment_id))
        return Step(event, None, None)
    return Step(event, deployment, await policy_of(deployment))


async def work(step: Step, run: StageRun) -> None:
    return None


async def record(uow: UnitOfWork, step: Step, _: None) -> list[Event]:
    deployment, policy = step.deployment, step.policy
    if deployment is None or policy is None:
        return []
    event = step.event
    decision = decide(deployment.rollout, _stats(event.candidate), _stats(event.live), policy)
    if decision.action == "wait":
        return []
    share = decision.rollout.share(policy)
    await repo.save_rollout(uow, deployment, decision.rollout, share)
    log.info(
        "rollout decided",
        deployment=str(deployment.deployment_id),
        action=decision.action,
        stage=decision.rollout.stage,
        why=list(decision.reasons),
        candidate=event.candidate.model_dump(),
    )
    return [
        event.caused(
            RolloutChanged,
            producer=NAME,
            cycle_id=deployment.cycle_id,  # the figures carry none; the rollout's cycle goes on
            deployment_id=deployment.deployment_id,
            task_name=deployment.task_name,
            model=deployment.candidate,
            stage=decision.rollout.stage,
            traffic_share=share,
            reason=decision.rollout.reason[:4000],
        )
    ]


def promotion_stage(db, policy_of: PolicyOf) -> Stage:
    return Stage(
        "promotion",
        RolloutMeasured,
        prepare=partial(prepare, db, policy_of),
        work=work,
        record=record,
        description="promote or roll back a rollout on its step's online figures",
        # A rollout that cannot be decided on waits for the next figures or an operator;
        # the cycle it came from is not failed for it.
        ends_cycle=False,
    )
