"""The routing table in a NATS KV bucket: the deployer writes, every gateway replica follows.

One key per task (`deployer-routes/<task>`) holding a `RouteEntry`. A gateway watches the whole
bucket (an ordered push consumer: each change arrives in well under a second) and swaps the
task's route in its table. Specs are read from the artifact store once per content hash.

A teacher route is checked against the residency allow-lists (the spec's and the operator's)
when it is built: a route to a host outside them is refused, logged, and never served.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Mapping, Sequence
from typing import Literal
from uuid import UUID

from nats.js.client import JetStreamContext
from nats.js.errors import BucketNotFoundError
from nats.js.kv import KeyValue
from pydantic import BaseModel, ConfigDict, Field

from shared.events.base import ArtifactRef
from shared.events.values import ROUTES_BUCKET
from shared.llm.hosts import operator_list, refusal, spec_list
from shared.logs import get_logger
from shared.tasks.spec import TaskSpec

from .domain import Backend, Route
from .gateway import RoutingTable
from .repository import Deployment

log = get_logger(__name__)

SpecLoader = Callable[[ArtifactRef], Awaitable[TaskSpec]]


class BackendEntry(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    kind: Literal["student", "teacher"]
    base_url: str = Field(max_length=2048)
    model: str = Field(max_length=256)
    version: str = Field(max_length=128)
    deployment_id: UUID | None = None
    api_key_env: str | None = Field(default=None, max_length=128)
    engine: Literal["openai", "vllm", "llama.cpp"] = "openai"

    def backend(self) -> Backend:
        return Backend(**self.model_dump())


class RouteEntry(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    task: str = Field(pattern=r"^[a-z0-9][a-z0-9_-]{0,63}$")
    spec: ArtifactRef
    live: BackendEntry
    candidate: BackendEntry | None = None
    stage: Literal["shadow", "ab", "full", "rolled_back"] | None = None
    share: float = Field(default=0.0, ge=0, le=1)


async def routes_bucket(js: JetStreamContext) -> KeyValue:
    try:
        return await js.key_value(ROUTES_BUCKET)
    except BucketNotFoundError:
        return await js.create_key_value(bucket=ROUTES_BUCKET, history=5)


async def put_route(kv: KeyValue, entry: RouteEntry) -> int:
    """Publish a task's route; returns the KV revision."""
    return await kv.put(entry.task, entry.model_dump_json().encode())


def residency_refusal(
    spec: TaskSpec, backend: Backend, operator_hosts: Sequence[str]
) -> str | None:
    if backend.kind != "teacher":
        return None
    lists = [spec_list(spec.residency.allowed_teacher_hosts), operator_list(operator_hosts)]
    return refusal(backend.base_url, lists)


class RouteFollower:
    """Keeps a gateway's RoutingTable equal to the bucket."""

    def __init__(
        self, table: RoutingTable, load_spec: SpecLoader, operator_hosts: Sequence[str] = ()
    ) -> None:
        self._table = table
        self._load_spec = load_spec
        self._operator_hosts = tuple(operator_hosts)
        self._specs: dict[str, TaskSpec] = {}

    async def apply(self, task: str, value: bytes | None) -> None:
        """One bucket change: a route written (value) or deleted (None)."""
        if value is None:
            self._table.remove(task)
            log.info("route removed", task=task)
            return
        entry = RouteEntry.model_validate_json(value)
        spec = self._specs.get(entry.spec.sha256)
        if spec is None:
            spec = self._specs[entry.spec.sha256] = await self._load_spec(entry.spec)
        route = Route(
            entry.task,
            spec,
            entry.live.backend(),
            entry.candidate.backend() if entry.candidate else None,
            entry.stage,
            entry.share,
        )
        for backend in (route.live, route.candidate):
            why = backend and residency_refusal(spec, backend, self._operator_hosts)
            if why:
                log.error("route refused", task=task, reason=why)
                self._table.remove(task)
                return
        self._table.set(task, route)
        log.info("route followed", task=task, stage=entry.stage, share=entry.share)

    async def follow(self, kv: KeyValue, stop: asyncio.Event) -> None:
        watcher = await kv.watchall()
        try:
            while not stop.is_set():
                try:
                    entry = await watcher.updates(timeout=0.5)
                except TimeoutError:  # nats' TimeoutError subclasses the builtin
                    continue
                if entry is None:  # the end of the initial values
                    continue
                deleted = entry.operation in ("DEL", "PURGE")
                try:
                    await self.apply(entry.key, None if deleted else entry.value)
                except Exception as exc:  # one bad entry must not stop the others
                    log.error("route entry unreadable", task=entry.key, error=repr(exc))
        finally:
            await watcher.stop()


def teacher_entry(spec: TaskSpec) -> BackendEntry:
    teacher = spec.teacher
    return BackendEntry(
        kind="teacher",
        base_url=teacher.base_url,
        model=teacher.model,
        version=teacher.model[:128],
        api_key_env=teacher.api_key_env,
    )


def served_entry(deployment: Deployment) -> BackendEntry | None:
    if not (deployment.base_url and deployment.served_model):
        return None  # its server is not answering yet: nothing may be routed to it
    return BackendEntry(
        kind="student",
        base_url=deployment.base_url,
        model=deployment.served_model,
        version=deployment.candidate.sha256,
        deployment_id=deployment.deployment_id,
        engine=deployment.engine or "openai",  # type: ignore[arg-type]
    )


def desired_routes(
    deployments: Sequence[Deployment], specs: Mapping[str, TaskSpec]
) -> dict[str, RouteEntry]:
    """The routing table the deployments call for, per task (pure; `specs` by sha256).

    Live: the task's latest full student, or the teacher until there is one. Candidate: the
    unfinished rollout's student, once served, at its stage and share.
    """
    by_task: dict[str, list[Deployment]] = {}
    for d in deployments:
        by_task.setdefault(d.task_name, []).append(d)
    routes = {}
    for task, found in by_task.items():
        full = [d for d in found if d.rollout.stage == "full"]
        active = [d for d in found if not d.rollout.finished]
        newest = (active or full)[-1]
        spec = specs[newest.task_spec.sha256]
        live = (served_entry(full[-1]) if full else None) or teacher_entry(spec)
        entry = RouteEntry(task=task, spec=newest.task_spec, live=live)
        if active and (candidate := served_entry(active[-1])) is not None:
            rollout = active[-1]
            entry = entry.model_copy(
                update={
                    "candidate": candidate,
                    "stage": rollout.rollout.stage,
                    "share": rollout.share,
                }
            )
        routes[task] = entry
    return routes
