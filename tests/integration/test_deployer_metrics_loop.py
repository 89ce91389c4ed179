"""Promotion and rollback driven by metrics, through the control loop and the routing bucket.

The metrics source is a fake of the port (controller.MetricsSource) returning set figures; the
database, the bucket (real nats-server), the stage and the state machine are real. The
candidate's server is registered as served (as a vLLM adapter would be), so routes carry it.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import nats

from deployer import repository as repo
from deployer.controller import Controller
from deployer.rollout import ArmStats
from deployer.routing import RouteEntry, routes_bucket
from deployer.service import Deps
from deployer.settings import DeployerSettings
from shared.artifacts import AsyncArtifactStore, LocalArtifactStore
from shared.db import Database
from tests.integration.test_deployer_service import (
    deliver,
    put_spec,
    selected,
)

GOOD = ArmStats(requests=200, errors=1, p95_ms=100.0)
LIVE = ArmStats(requests=200, errors=1, p95_ms=100.0)
BAD = ArmStats(requests=200, errors=40, p95_ms=100.0)


@dataclass
class Figures:
    candidate: dict = field(default_factory=dict)  # deployment id -> ArmStats

    async def arm_stats(self, deployment: repo.Deployment) -> tuple[ArmStats, ArmStats]:
        return self.candidate.get(deployment.deployment_id, ArmStats()), LIVE


async def start(deps: Deps, spec, sha: str) -> repo.Deployment:
    event = selected(spec, sha * 64).model_copy(update={"chosen_engine": "vllm"})
    await deliver(deps, event)
    (deployment,) = [d for d in await repo.unfinished(deps.db) if d.candidate.sha256 == sha * 64]
    url = f"http://127.0.0.1:9/{sha}/v1"
    await repo.set_served(deps.db, deployment.deployment_id, "vllm", url, f"adapter-{sha}")
    return deployment


async def test_metrics_walk_a_good_candidate_to_full_and_roll_a_bad_one_back(
    private_nats, sqlite_db: Database, tmp_path: Path
):
    store = AsyncArtifactStore(LocalArtifactStore(tmp_path / "store"))
    deps = Deps(db=sqlite_db, artifacts=store, settings=DeployerSettings())
    nc = await nats.connect(private_nats.url)
    kv = await routes_bucket(nc.jetstream())
    figures = Figures()
    controller = Controller(sqlite_db, store, deps.settings, tmp_path / "work", figures)

    async def route() -> RouteEntry:
        return RouteEntry.model_validate_json((await kv.get("toy-triage")).value)

    try:
        spec = await put_spec(deps)
        good = await start(deps, spec, "a")
        await controller.run_once(kv)  # no samples yet: waits in shadow
        assert ((await route()).stage, (await route()).share) == ("shadow", 0.0)

        figures.candidate[good.deployment_id] = GOOD
        seen = []
        for _ in range(3):
            await controller.run_once(kv)
            current = await route()
            seen.append((current.stage, current.share, current.live.kind))
        assert seen == [("ab", 0.1, "teacher"), ("ab", 0.5, "teacher"), (None, 0.0, "student")]
        assert (await route()).live.model == "adapter-a" and (await route()).candidate is None

        bad = await start(deps, spec, "b")
        await controller.run_once(kv)
        assert (await route()).candidate.model == "adapter-b"
        figures.candidate[bad.deployment_id] = BAD
        (decision,) = await controller.decide()
        assert decision.action == "rollback" and "error rate 40/200" in decision.rollout.reason
        await controller.run_once(kv)
        after = await route()
        # The full student stays live; the worse candidate takes nothing any more.
        assert after.live.model == "adapter-a" and after.candidate is None
    finally:
        await controller.close()
        await nc.close()
