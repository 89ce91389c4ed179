"""The deployer's use cases: start a rollout for a passing candidate, step it, operate it.

The `rollout` stage starts a rollout, in shadow, of the quantizer's chosen variant
(`variant.selected`): the exact artifact and engine it measured. A task that asks for no
quantization gets no variant, so for it a passing adapter evaluation (`evaluation.completed`)
starts the rollout of that adapter (served as a LoRA on its base). A new candidate supersedes
the task's unfinished rollout, rolled back with the reason.

The `promotion` stage (promotion.py) applies the automatic rule (rollout.decide) to the
feedback-collector's `rollout.measured`; `advance` does the same for a metrics source polled by
the control loop (tests and tools), and
`operate` an operator's promote / rollback / pause / resume. Both record the new stage and its
`rollout.changed` in one transaction, under the row's revision, so a crash between deciding
and recording loses nothing, and two writers never both win.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import partial
from typing import Literal
from uuid import UUID, uuid4

from shared.artifacts import AsyncArtifactStore
from shared.artifacts.base import ArtifactError
from shared.bus import PermanentError
from shared.db import Database, UnitOfWork
from shared.events.base import ArtifactRef
from shared.events.catalog import (
    ADAPTER_VARIANT,
    EvaluationCompleted,
    Event,
    RolloutChanged,
    VariantSelected,
)
from shared.runtime.stage import Stage, StageRun
from shared.tasks import TaskSpec, TaskSpecError, spec_from_json

from . import repository as repo
from .promotion import promotion_stage
from .rollout import ArmStats, Decision, Policy, Rollout, decide, pause, promote, rollback
from .settings import NAME, DeployerSettings

Action = Literal["promote", "rollback", "pause", "resume"]


@dataclass
class Deps:
    db: Database
    artifacts: AsyncArtifactStore
    settings: DeployerSettings


@dataclass(frozen=True)
class Candidate:
    """What a rollout serves: a model artifact and the engine/variant that was measured."""

    model: ArtifactRef
    kind: str  # "adapter" (LoRA on the base) or the quantizer's engine: "llama.cpp", "vllm", ...
    variant: str | None  # the quantizer's variant name (gguf-q8_0, ...); ADAPTER_VARIANT
    evaluation_id: UUID
    measured: ArtifactRef | None = None  # the report with its replies (quantizer's, evaluator's)


@dataclass(frozen=True)
class Job:
    event: EvaluationCompleted | VariantSelected
    candidate: Candidate | None  # None: nothing to deploy


def stages(deps: Deps) -> list[Stage]:
    return [
        Stage(
            "rollout",
            VariantSelected,
            prepare=partial(prepare_variant, deps),
            work=partial(work, deps),
            record=partial(record, deps),
            description="start a rollout (shadow first) of the quantizer's chosen variant",
        ),
        Stage(
            "rollout",
            EvaluationCompleted,
            prepare=partial(prepare_adapter, deps),
            work=partial(work, deps),
            record=partial(record, deps),
            description="start a rollout of a passing adapter when the task asks for no "
            "quantization (otherwise the quantizer's variant.selected does)",
        ),
        promotion_stage(deps.db, partial(_policy_of, deps)),
    ]


async def _policy_of(deps: Deps, deployment: repo.Deployment) -> Policy:
    return policy_for(await _spec(deps, deployment))


async def load_spec(artifacts: AsyncArtifactStore, ref: ArtifactRef) -> TaskSpec:
    try:
        return spec_from_json(await artifacts.get_bytes(ref))
    except (ArtifactError, TaskSpecError) as exc:
        raise PermanentError(f"task spec {ref.uri}: {exc}") from exc


async def prepare_variant(deps: Deps, event: VariantSelected, run: StageRun) -> Job:
    await load_spec(deps.artifacts, event.task_spec)  # one that does not load cannot roll out
    candidate = Candidate(
        event.chosen_model, event.chosen_engine, event.chosen, event.evaluation_id, event.report
    )
    return Job(event, candidate)


async def prepare_adapter(deps: Deps, event: EvaluationCompleted, run: StageRun) -> Job:
    if not event.passed or event.candidate_kind != "adapter":
        return Job(event, None)
    spec = await load_spec(deps.artifacts, event.task_spec)
    if spec.quantization:  # the quantizer answers with the variant to ship
        return Job(event, None)
    # Its evaluation report holds the replies serving parity checks it against.
    candidate = Candidate(
        event.candidate, "adapter", ADAPTER_VARIANT, event.evaluation_id, event.report
    )
    return Job(event, candidate)


async def work(deps: Deps, job: Job, run: StageRun) -> None:
    # GAP (issue 13): serving parity before the shadow step. parity.replay does the check; it
    # needs the evaluator's per-row replies (not published yet) and the candidate's server.
    return None


async def record(deps: Deps, uow: UnitOfWork, job: Job, result: None) -> list[Event]:
    event, candidate = job.event, job.candidate
    if candidate is None:
        return []
    answers: list[Event] = []
    for old in await repo.active_deployments(uow, event.task_name):
        why = f"superseded by the candidate of evaluation {candidate.evaluation_id}"
        gone = rollback(old.rollout, why).rollout
        await repo.save_rollout(uow, old, gone, 0.0)
        answers.append(changed(event, old.deployment_id, old.candidate, gone, 0.0))
    deployment_id = uuid4()
    start = Rollout("shadow", 0, False, f"evaluation {candidate.evaluation_id} passed")
    repo.add_deployment(
        uow,
        {
            "deployment_id": str(deployment_id),
            "source_event_id": str(event.event_id),
            "cycle_id": str(event.cycle_id),
            "task_name": event.task_name,
            "task_version": event.task_version,
            "task_spec": event.task_spec.model_dump(mode="json"),
            "candidate": candidate.model.model_dump(mode="json"),
            "candidate_kind": candidate.kind,
            "variant": candidate.variant,
            "measured": candidate.measured.model_dump(mode="json") if candidate.measured else None,
            "stage": start.stage,
            "step": 0,
            "share": 0.0,
            "paused": False,
            "reason": start.reason,
        },
    )
    answers.append(changed(event, deployment_id, candidate.model, start, 0.0))
    return answers


def changed(source, deployment_id: UUID, model, rollout: Rollout, share: float) -> RolloutChanged:
    return source.caused(
        RolloutChanged,
        producer=NAME,
        deployment_id=deployment_id,
        task_name=source.task_name,
        model=model,
        stage=rollout.stage,
        traffic_share=share,
        reason=rollout.reason[:4000],
    )


def policy_for(spec: TaskSpec, ab_shares: tuple[float, ...] | None = None) -> Policy:
    """The task's rollout settings as the state machine's policy."""
    first = spec.rollout.ab_share
    shares = ab_shares or tuple(sorted({first, max(first, 0.5)}))
    return Policy(
        ab_shares=shares,
        shadow_samples=spec.rollout.shadow_requests,
        ab_samples=spec.rollout.ab_requests,
        max_error_rate=spec.rollout.max_error_rate,
        p95_budget_ms=spec.thresholds.p95_latency_ms,
        min_agreement=spec.rollout.min_agreement,
    )


async def advance(deps: Deps, deployment_id: UUID, candidate: ArmStats, live: ArmStats) -> Decision:
    """One automatic step for a deployment, from its arms' metrics over the current step."""
    deployment = await _get(deps, deployment_id)
    policy = policy_for(await _spec(deps, deployment))
    decision = decide(deployment.rollout, candidate, live, policy)
    if decision.action != "wait":
        await _save(deps, deployment, decision.rollout, decision.rollout.share(policy))
    return decision


async def operate(deps: Deps, deployment_id: UUID, action: Action, reason: str) -> Rollout:
    """An operator's command (`distillery rollout promote|rollback|pause|resume`)."""
    deployment = await _get(deps, deployment_id)
    policy = policy_for(await _spec(deps, deployment))
    current = deployment.rollout
    try:
        if action == "promote":
            after = promote(current, policy, f"promoted by an operator: {reason}").rollout
        elif action == "rollback":
            after = rollback(current, f"rolled back by an operator: {reason}").rollout
        else:
            after = pause(current, action == "pause", f"{action}d by an operator: {reason}")
    except ValueError as exc:
        raise PermanentError(str(exc)) from exc
    await _save(deps, deployment, after, after.share(policy))
    return after


async def block(deps: Deps, deployment: repo.Deployment, why: str) -> Rollout:
    """The candidate cannot take traffic (it failed serving parity, or nothing here serves
    it): rolled back before any, with the reason."""
    after = rollback(deployment.rollout, why).rollout
    await _save(deps, deployment, after, 0.0)
    return after


async def _get(deps: Deps, deployment_id: UUID) -> repo.Deployment:
    deployment = await repo.get_deployment(deps.db, deployment_id)
    if deployment is None:
        raise PermanentError(f"no deployment {deployment_id}")
    return deployment


async def _spec(deps: Deps, deployment: repo.Deployment) -> TaskSpec:
    try:
        return spec_from_json(await deps.artifacts.get_bytes(deployment.task_spec))
    except (ArtifactError, TaskSpecError) as exc:
        raise PermanentError(f"task spec {deployment.task_spec.uri}: {exc}") from exc


async def _save(deps: Deps, deployment: repo.Deployment, rollout: Rollout, share: float) -> None:
    event = RolloutChanged(
        producer=NAME,
        cycle_id=deployment.cycle_id,
        deployment_id=deployment.deployment_id,
        task_name=deployment.task_name,
        model=deployment.candidate,
        stage=rollout.stage,
        traffic_share=share,
        reason=rollout.reason[:4000],
    )
    async with deps.db.uow() as uow:
        await repo.save_rollout(uow, deployment, rollout, share)
        await uow.publish(event)
        await uow.commit()
