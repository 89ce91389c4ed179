"""The deployer's rollout on real SQLite and PostgreSQL: started by the stage, stepped by the
rule, operated by hand, and resumed from the recorded stage by a restarted process.

The bus message is the consumer policy's fake (tests/unit/test_consumer_policy.py); the
database, the artifact store and the transactions are real.
"""

from __future__ import annotations

import json
import uuid
from pathlib import Path

import pytest
from sqlalchemy import select

from deployer import repository as repo
from deployer.rollout import ArmStats
from deployer.service import Deps, advance, operate, stages
from deployer.settings import DeployerSettings
from shared.artifacts import AsyncArtifactStore, LocalArtifactStore
from shared.bus import PermanentError, process
from shared.db import Database, OutboxRow
from shared.events import ConsumerPolicy, EvaluationCompleted, RolloutChanged
from shared.events.base import ArtifactRef
from shared.events.quantization import VariantReport, VariantSelected
from shared.runtime.stage import handler_for
from tests.fixtures.teacher_server import toy_spec
from tests.unit.test_consumer_policy import FakeMessage

POLICY = ConsumerPolicy(max_deliver=3)
REF = ArtifactRef(uri="file:///x", sha256="0" * 64, size_bytes=1)


@pytest.fixture
async def deps(db: Database, tmp_path: Path) -> Deps:
    store = AsyncArtifactStore(LocalArtifactStore(tmp_path / "store"))
    return Deps(db=db, artifacts=store, settings=DeployerSettings())


async def put_spec(deps: Deps, **sections) -> ArtifactRef:
    # Small sample sizes so a handful of numbers can move a rollout.
    rollout = {"shadow_requests": 50, "ab_share": 0.1, "ab_requests": 100}
    spec = toy_spec("http://127.0.0.1:9/v1", rollout=rollout, **sections)
    return await deps.artifacts.put_bytes(json.dumps(spec).encode())


def selected(spec: ArtifactRef, model_sha: str = "1" * 64) -> VariantSelected:
    model = REF.model_copy(update={"sha256": model_sha})
    return VariantSelected(
        producer="quantizer", cycle_id=uuid.uuid4(), task_name="toy-triage", task_version=1,
        task_spec=spec, evaluation_id=uuid.uuid4(), source_adapter=REF, base_model=REF,
        merged_model=REF, chosen="gguf-q8_0", chosen_engine="llama.cpp", chosen_model=model,
        reason="cheapest passing", report=REF,
        variants=[VariantReport(name="gguf-q8_0", engine="llama.cpp", method="Q8_0",
                                status="evaluated", passed=True)],
    )  # fmt: skip


async def deliver(deps: Deps, event) -> str:
    stage = next(s for s in stages(deps) if s.consumes is type(event))
    handler = handler_for(stage, service="deployer", db=deps.db)
    msg = FakeMessage(event.model_dump_json().encode(), subject=event.subject)
    consumer = f"deployer--{type(event).__name__}"
    return await process(
        msg, type(event), handler, service="deployer", consumer=consumer, db=deps.db, policy=POLICY
    )


async def announced(db: Database) -> list[RolloutChanged]:
    async with db.uow() as uow:
        rows = await uow.session.scalars(
            select(OutboxRow.payload)
            .where(OutboxRow.subject == RolloutChanged.subject)
            .order_by(OutboxRow.id)
        )
        return [RolloutChanged.model_validate_json(p) for p in rows]


def stats(n: int, errors: int = 0) -> ArmStats:
    return ArmStats(requests=n, errors=errors, p95_ms=100.0)


async def test_a_chosen_variant_starts_in_shadow_once(deps: Deps):
    event = selected(await put_spec(deps))
    await deliver(deps, event)
    await deliver(deps, event)  # redelivered: no second rollout
    (started,) = await repo.unfinished(deps.db)
    assert started.rollout.stage == "shadow" and started.share == 0.0
    assert started.candidate == event.chosen_model and started.candidate_kind == "llama.cpp"
    (change,) = await announced(deps.db)
    assert (change.stage, change.traffic_share) == ("shadow", 0.0)
    assert change.deployment_id == started.deployment_id
    assert change.causation_id == event.event_id


async def test_a_new_candidate_supersedes_the_unfinished_one(deps: Deps):
    spec = await put_spec(deps)
    await deliver(deps, selected(spec, "1" * 64))
    await deliver(deps, selected(spec, "2" * 64))
    (live,) = await repo.unfinished(deps.db)
    assert live.candidate.sha256 == "2" * 64
    stages_seen = [(c.model.sha256[0], c.stage) for c in await announced(deps.db)]
    assert stages_seen == [("1", "shadow"), ("1", "rolled_back"), ("2", "shadow")]
    assert "superseded" in (await announced(deps.db))[1].reason


async def test_adapter_evaluations_start_a_rollout_only_without_quantization(deps: Deps):
    def evaluation(spec: ArtifactRef, passed: bool = True) -> EvaluationCompleted:
        return EvaluationCompleted(
            producer="evaluator", cycle_id=uuid.uuid4(), evaluation_id=uuid.uuid4(),
            task_name="toy-triage", task_version=1, task_spec=spec, candidate=REF,
            candidate_kind="adapter", passed=passed, report=REF,
        )  # fmt: skip

    await deliver(deps, evaluation(await put_spec(deps)))  # default: int8 variants to come
    await deliver(deps, evaluation(await put_spec(deps, quantization=[]), passed=False))
    assert await repo.unfinished(deps.db) == []
    await deliver(deps, evaluation(await put_spec(deps, quantization=[])))
    (started,) = await repo.unfinished(deps.db)
    assert started.candidate_kind == "adapter"


async def test_metrics_promote_step_by_step_and_a_restart_resumes(deps: Deps, db_url: str):
    await deliver(deps, selected(await put_spec(deps)))
    (deployment,) = await repo.unfinished(deps.db)
    waiting = await advance(deps, deployment.deployment_id, stats(10), stats(10))
    assert waiting.action == "wait"
    first = await advance(deps, deployment.deployment_id, stats(60), stats(60))
    assert (first.action, first.rollout.stage) == ("promote", "ab")

    # A new process (new engine, same database) finds the rollout where it was recorded.
    restarted = Database(db_url)
    try:
        again = Deps(db=restarted, artifacts=deps.artifacts, settings=deps.settings)
        (resumed,) = await repo.unfinished(restarted)
        assert (resumed.rollout.stage, resumed.rollout.step, resumed.share) == ("ab", 0, 0.1)
        second = await advance(again, resumed.deployment_id, stats(150), stats(150))
        assert (second.rollout.stage, second.rollout.step) == ("ab", 1)
        third = await advance(again, resumed.deployment_id, stats(150), stats(150))
        assert third.rollout.stage == "full"
    finally:
        await restarted.dispose()
    steps = [(c.stage, c.traffic_share) for c in await announced(deps.db)]
    assert steps == [("shadow", 0.0), ("ab", 0.1), ("ab", 0.5), ("full", 1.0)]
    assert await repo.unfinished(deps.db) == []


async def test_a_worse_candidate_is_rolled_back_with_the_reason(deps: Deps):
    await deliver(deps, selected(await put_spec(deps)))
    (deployment,) = await repo.unfinished(deps.db)
    decision = await advance(deps, deployment.deployment_id, stats(100, errors=30), stats(100))
    assert decision.action == "rollback"
    last = (await announced(deps.db))[-1]
    assert last.stage == "rolled_back" and "error rate 30/100" in last.reason


async def test_operators_pause_promote_and_roll_back(deps: Deps):
    await deliver(deps, selected(await put_spec(deps)))
    (deployment,) = await repo.unfinished(deps.db)
    paused = await operate(deps, deployment.deployment_id, "pause", "incident 7")
    assert paused.paused
    held = await advance(deps, deployment.deployment_id, stats(100, errors=90), stats(100))
    assert held.action == "wait"
    promoted = await operate(deps, deployment.deployment_id, "promote", "looks fine")
    assert (promoted.stage, promoted.paused) == ("ab", True)
    await operate(deps, deployment.deployment_id, "resume", "incident closed")
    rolled = await operate(deps, deployment.deployment_id, "rollback", "customer complaint")
    assert rolled.stage == "rolled_back"
    with pytest.raises(PermanentError, match="cannot be promoted"):
        await operate(deps, deployment.deployment_id, "promote", "again")
    reasons = [c.reason for c in await announced(deps.db)]
    assert "rolled back by an operator: customer complaint" in reasons[-1]


async def test_a_decision_on_a_stale_read_is_refused(deps: Deps):
    await deliver(deps, selected(await put_spec(deps)))
    (stale,) = await repo.unfinished(deps.db)
    await operate(deps, stale.deployment_id, "pause", "first writer")
    async with deps.db.uow() as uow:
        with pytest.raises(repo.StaleRevision):
            await repo.save_rollout(uow, stale, stale.rollout, 0.0)


def measured(deployment, stage: str, share: float, candidate: dict, live: dict):
    from shared.events.production import ArmFigures, RolloutMeasured

    return RolloutMeasured(
        producer="feedback-collector",
        deployment_id=deployment.deployment_id,
        task_name="toy-triage",
        stage=stage,
        traffic_share=share,
        window_start="2026-12-01T00:00:00Z",
        window_end="2026-12-01T00:05:00Z",
        candidate=ArmFigures(**candidate),
        live=ArmFigures(**live),
    )


async def test_the_collectors_figures_promote_once_and_stale_ones_are_ignored(deps: Deps):
    event = selected(await put_spec(deps))
    await deliver(deps, event)
    (shadow,) = await repo.unfinished(deps.db)
    few = measured(
        shadow, "shadow", 0.0, {"requests": 10, "errors": 0}, {"requests": 10, "errors": 0}
    )
    await deliver(deps, few)  # below the spec's 50 shadow samples: wait
    assert (await repo.get_deployment(deps.db, shadow.deployment_id)).rollout.stage == "shadow"

    held = {"requests": 60, "errors": 0, "p95_ms": 90.0, "compared": 60, "agreed": 58}
    enough = measured(shadow, "shadow", 0.0, held, {"requests": 60, "errors": 0, "p95_ms": 80.0})
    await deliver(deps, enough)
    await deliver(deps, enough)  # redelivered: decided once
    # Figures still counted for shadow after the step moved on: nothing more is decided.
    later = measured(shadow, "shadow", 0.0, {**held, "requests": 70}, {"requests": 70, "errors": 0})
    await deliver(deps, later)
    after = await repo.get_deployment(deps.db, shadow.deployment_id)
    assert (after.rollout.stage, after.share) == ("ab", 0.1)
    changes = await announced(deps.db)
    assert [(c.stage, c.traffic_share) for c in changes] == [("shadow", 0.0), ("ab", 0.1)]
    assert changes[-1].cycle_id == event.cycle_id and changes[-1].causation_id == enough.event_id


async def test_a_shadow_that_disagrees_with_the_live_model_is_rolled_back(deps: Deps):
    await deliver(deps, selected(await put_spec(deps)))
    (shadow,) = await repo.unfinished(deps.db)
    wrong = {"requests": 60, "errors": 0, "p95_ms": 90.0, "compared": 60, "agreed": 3}
    await deliver(deps, measured(shadow, "shadow", 0.0, wrong, {"requests": 60, "errors": 0}))
    after = await repo.get_deployment(deps.db, shadow.deployment_id)
    assert after.rollout.stage == "rolled_back" and "agreement" in after.rollout.reason
