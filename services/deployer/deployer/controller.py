"""The control plane's loop: keep a server up for every deployment that needs one, and the
routing bucket equal to what the deployments call for.

Reconciling, not reacting: each pass reads the deployments from the database (the record of
truth), starts what is missing, stops what is no longer needed, and writes only the routes
that changed. A deployer restarted mid-rollout therefore restarts its servers and re-publishes
its routes on the first pass, from the recorded stage; a pass that fails is logged and the
next one tries again.

Servers (serving.py): a GGUF variant is started here as a local llama.cpp server; a vLLM
variant, or an adapter of a task without quantization, as a local `vllm serve`. Before the
routes point at the server of an unfinished rollout, serving parity replays golden rows
through it (parity.py), and a server that answers otherwise is stopped and the rollout rolled
back with the diff; so is a candidate nothing here can serve, and one whose server failed to
start `server_start_attempts` passes in a row. GAP (issue 13): adapters loaded into one shared
vLLM server, and a transformers fallback for a non-GGUF variant on CPU, are not built.
"""

from __future__ import annotations

import asyncio
import contextlib
from pathlib import Path
from typing import Protocol
from uuid import UUID

from nats.js.errors import NoKeysError
from nats.js.kv import KeyValue

from shared.artifacts import AsyncArtifactStore
from shared.db import Database
from shared.events.base import ArtifactRef
from shared.logs import get_logger
from shared.tasks import TaskSpec, spec_from_json
from shared.tasks.registry import list_specs

from . import parity
from . import repository as repo
from .domain import Backend
from .rollout import ArmStats, Decision
from .routing import RouteEntry, desired_routes, put_route, routes_bucket, teacher_entry
from .servers import ModelServer, Served, ServerError
from .service import Deps, advance, block
from .serving import server_for
from .settings import DeployerSettings
from .upstream import Upstream, UpstreamError

log = get_logger(__name__)


class MetricsSource(Protocol):
    """The online metrics of a deployment's two arms over its current step: the candidate's
    and the live model's. The feedback-collector computes them (by query, per model version
    and stage); GAP (issue 13/14): the adapter that asks it is not built, so without a source
    the loop never decides on its own and operators promote by hand."""

    async def arm_stats(self, deployment: repo.Deployment) -> tuple[ArmStats, ArmStats]: ...


class Controller:
    def __init__(
        self,
        db: Database,
        artifacts: AsyncArtifactStore,
        settings: DeployerSettings,
        work_dir: Path,
        metrics: MetricsSource | None = None,
    ) -> None:
        self._db = db
        self._metrics = metrics
        self._artifacts = artifacts
        self._settings = settings
        self._work_dir = work_dir
        self._servers: dict[UUID, ModelServer] = {}
        self._failed_starts: dict[UUID, int] = {}
        self._specs: dict[str, TaskSpec] = {}
        self._published: dict[str, RouteEntry] = {}
        self._bucket_read = False
        self._upstream = Upstream(timeout_s=settings.upstream_timeout_s)
        self._deps = Deps(db=db, artifacts=artifacts, settings=settings)

    async def serve(self) -> list[repo.Deployment]:
        """Start servers that are missing, stop those no longer needed; the deployments."""
        wanted = await repo.to_serve(self._db)
        for gone in set(self._servers) - {d.deployment_id for d in wanted}:
            await self._servers.pop(gone).stop()
            log.info("model server stopped", deployment=str(gone))
        for deployment in wanted:
            if deployment.deployment_id in self._servers:
                continue
            server = await server_for(deployment, self._artifacts, self._settings, self._work_dir)
            if isinstance(server, str):
                # One whose server answers from outside this loop (its address already
                # recorded) goes on; a rollout nothing serves would wait in shadow for ever,
                # holding its cycle open (the collector starts no other while one is in
                # flight): it ends here.
                if deployment.base_url is None and not deployment.rollout.finished:
                    await block(self._deps, deployment, server)
                continue
            served = await self._start(deployment, server)
            if served is None:
                continue
            try:
                same = deployment.rollout.finished or await self._same_as_measured(
                    deployment, served, server.engine
                )
            except BaseException:  # no server left running that nothing tracks
                await server.stop()
                raise
            if not same:
                await server.stop()
                continue
            self._servers[deployment.deployment_id] = server
            await repo.set_served(
                self._db,
                deployment.deployment_id,
                server.engine,
                served.base_url,
                served.model,
            )
            log.info("model server started", deployment=str(deployment.deployment_id))
        return await repo.to_serve(self._db)

    async def _start(self, deployment: repo.Deployment, server: ModelServer) -> Served | None:
        """The started server, or None: a failed start is retried on the next pass, up to
        `server_start_attempts` in a row; then an unfinished rollout is rolled back with the
        error (a server that cannot start would otherwise be restarted every pass)."""
        key = deployment.deployment_id
        try:
            served = await server.start()
        except ServerError as exc:
            failed = self._failed_starts[key] = self._failed_starts.get(key, 0) + 1
            log.warning("model server did not start", deployment=str(key), error=str(exc))
            if failed >= self._settings.server_start_attempts and not deployment.rollout.finished:
                why = f"its model server did not start ({failed} tries): {exc}"
                await block(self._deps, deployment, why)
            return None
        self._failed_starts.pop(key, None)
        return served

    async def _same_as_measured(
        self, deployment: repo.Deployment, served: Served, engine: str
    ) -> bool:
        """Serving parity before the routes point at a new server (parity.py); a failure rolls
        the deployment back with the diff. A live (full) student's restart is not re-checked:
        its file is the one that passed, verified by its sha256 on the way in."""
        spec = await self._spec(deployment.task_spec)
        backend = Backend(
            "student",
            served.base_url,
            served.model,
            deployment.candidate.sha256,
            deployment.deployment_id,
            engine=engine,  # type: ignore[arg-type]  # a server's: llama.cpp or vllm
        )
        try:
            result = await parity.check(
                self._artifacts,
                self._upstream,
                spec,
                backend,
                deployment.measured,
                deployment.variant,
            )
        except UpstreamError as exc:  # a server that cannot answer golden rows takes no traffic
            why = f"the server failed while replaying golden rows: {exc.reason}"
            result = parity.ParityResult(0, (), spec.rollout.parity_tolerance, why)
        if result.passed:
            log.info(
                "serving parity passed",
                deployment=str(deployment.deployment_id),
                rows=result.checked,
                differing=len(result.mismatches),
            )
            return True
        log.warning(
            "serving parity failed", deployment=str(deployment.deployment_id), diff=result.diff()
        )
        await block(self._deps, deployment, f"serving parity failed: {result.diff()}")
        return False

    async def _spec(self, ref: ArtifactRef) -> TaskSpec:
        if ref.sha256 not in self._specs:
            self._specs[ref.sha256] = spec_from_json(await self._artifacts.get_bytes(ref))
        return self._specs[ref.sha256]

    async def _read_bucket(self, kv: KeyValue) -> None:
        """What the bucket holds now: after a restart, the routes a previous process wrote."""
        try:
            tasks = await kv.keys()
        except NoKeysError:
            return
        for task in tasks:
            entry = await kv.get(task)
            if entry.value:
                self._published[task] = RouteEntry.model_validate_json(entry.value)

    async def sync_routes(self, kv: KeyValue, deployments: list[repo.Deployment]) -> int:
        """Write the routes that differ from what was last written; how many."""
        if not self._bucket_read:
            await self._read_bucket(kv)
            self._bucket_read = True
        specs = {d.task_spec.sha256: await self._spec(d.task_spec) for d in deployments}
        desired = desired_routes(deployments, specs)
        # A registered task that no deployment serves yet is served by its teacher: its
        # production traffic and traces come before any student (the seed's analysis phase).
        for row in await list_specs(self._db):
            if row.name not in desired:
                ref = row.ref()
                live = teacher_entry(await self._spec(ref))
                desired[row.name] = RouteEntry(task=row.name, spec=ref, live=live)
        # A task whose only rollout ended without a full student goes back to its teacher.
        for task, old in self._published.items():
            if task not in desired and (old.candidate is not None or old.live.kind != "teacher"):
                spec = self._specs.get(old.spec.sha256) or spec_from_json(
                    await self._artifacts.get_bytes(old.spec)
                )
                desired[task] = RouteEntry(task=task, spec=old.spec, live=teacher_entry(spec))
        changed = 0
        for task, entry in desired.items():
            if self._published.get(task) != entry:
                await put_route(kv, entry)
                self._published[task] = entry
                changed += 1
        return changed

    async def decide(self) -> list[Decision]:
        """The automatic rule, once, for every unfinished rollout whose arms have metrics."""
        if self._metrics is None:
            return []
        decisions = []
        for deployment in await repo.unfinished(self._db):
            candidate, live = await self._metrics.arm_stats(deployment)
            decision = await advance(self._deps, deployment.deployment_id, candidate, live)
            if decision.action != "wait":
                log.info(
                    "rollout decided",
                    deployment=str(deployment.deployment_id),
                    action=decision.action,
                    stage=decision.rollout.stage,
                    reason=decision.rollout.reason[:300],
                )
            decisions.append(decision)
        return decisions

    async def run_once(self, kv: KeyValue) -> int:
        await self.decide()
        return await self.sync_routes(kv, await self.serve())

    async def run(self, kv: KeyValue, stop: asyncio.Event, every_s: float = 1.0) -> None:
        try:
            while not stop.is_set():
                try:
                    await self.run_once(kv)
                except Exception as exc:  # the database or bus away: the next pass retries
                    log.error("control pass failed", error=repr(exc))
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(stop.wait(), every_s)
        finally:
            await self.close()

    async def close(self) -> None:
        for server in self._servers.values():
            await server.stop()
        self._servers.clear()
        await self._upstream.aclose()


class ControlLoop:
    """The controller as one of the service's background loops (run from start-up to
    shutdown next to the outbox relay, on the service's own bus connection)."""

    name = "deployer-control"

    def __init__(self, controller: Controller, every_s: float) -> None:
        self.controller = controller
        self.every_s = every_s

    async def run(self, broker, stop: asyncio.Event) -> None:
        connection = await broker.connect()
        kv = await routes_bucket(connection.jetstream())
        await self.controller.run(kv, stop, self.every_s)
