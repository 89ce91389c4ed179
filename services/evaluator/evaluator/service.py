"""Use cases: evaluate a trained adapter, evaluate a quantized variant.

Each runs its long work first (teacher calls, a worker process for the local models), with
results cached as they arrive, and only then claims the event and commits the verdict row and
the events it causes in one transaction. A redelivery after that commit is a no-op; one before
it finds the cached results and finishes quickly, with the same content-addressed report.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from sqlalchemy import select

from shared.bus import Delivery, PermanentError
from shared.db import InboxRow
from shared.events import Event
from shared.events.base import ArtifactRef
from shared.events.catalog import CycleFailed, QuantizationCompleted, TrainingCompleted
from shared.logs import get_logger
from shared.runtime.service import ServiceContext
from shared.tasks.load import TaskSpecError, spec_from_json
from shared.tasks.spec import TaskSpec

from . import adapters, quantized
from .data import DataError, GoldenRow, ProbeRow, parse_jsonl
from .models import EvaluationRow
from .outcome import Outcome
from .results import ArtifactReader, LocalModel, ResultsCache, digest, run_local
from .settings import EvaluatorSettings
from .teacher import TeacherClient, check_residency, teacher_key, teacher_result

NAME = "evaluator"
# evaluation_id = uuid5(NS, consumer:event_id): a redelivered job names the same evaluation.
NS = uuid.UUID("0f6c7f8e-5b8e-4c57-9d0a-2f4a3f1e9b21")
SETUP_VERSION = 1
log = get_logger(__name__)


@dataclass(frozen=True)
class SourceVerdict:
    evaluation_id: str
    iteration: int
    quality: float
    report: dict[str, Any]


@dataclass
class Inputs:
    """Everything an evaluation reads from the task spec, fetched and checked once."""

    spec: TaskSpec
    golden_ref: ArtifactRef
    rows: list[GoldenRow]
    probes: list[ProbeRow]
    general_text: str | None
    setup: str
    evaluation_id: uuid.UUID


class Evaluator:
    def __init__(self, ctx: ServiceContext, settings: EvaluatorSettings) -> None:
        self.ctx = ctx
        self.settings = settings
        self.work_dir = Path(settings.work_dir or ctx.settings.home / "evaluator").resolve()
        self.reader = ArtifactReader(ctx.artifacts)
        self.cache = ResultsCache(ctx.db, self.reader)
        self._slots = asyncio.Semaphore(settings.max_concurrent_evaluations)

    async def on_training(self, event: TrainingCompleted, delivery: Delivery) -> None:
        async def work(inputs: Inputs) -> Outcome:
            return await adapters.evaluate(self, event, inputs, delivery)

        await self._handle(event, delivery, event.task_spec, event.task_name, work, ends_cycle=True)

    async def on_quantized(self, event: QuantizationCompleted, delivery: Delivery) -> None:
        async def work(inputs: Inputs) -> Outcome:
            return await quantized.evaluate(self, event, inputs, delivery)

        # A variant that cannot be evaluated is only dead-lettered: the adapter already passed,
        # and other variants (or the adapter itself) may still ship.
        await self._handle(
            event, delivery, event.task_spec, event.task_name, work, ends_cycle=False
        )

    async def _handle(
        self,
        event: Event,
        delivery: Delivery,
        spec_ref: ArtifactRef,
        task_name: str,
        work: Callable[[Inputs], Awaitable[Outcome]],
        *,
        ends_cycle: bool,
    ) -> None:
        if await self._already_applied(delivery.consumer, event):
            return
        try:
            async with self._slots:
                inputs = await self._inputs(spec_ref, delivery.consumer, event)
                outcome = await work(inputs)
        except PermanentError as exc:
            if ends_cycle:
                await self._fail_cycle(event, delivery, task_name, str(exc))
            raise
        except Exception as exc:
            if ends_cycle and delivery.number >= delivery.policy.max_deliver:
                # The kernel dead-letters this delivery; the cycle must not wait forever on it.
                reason = f"gave up after {delivery.number} deliveries: {exc!r}"
                await self._fail_cycle(event, delivery, task_name, reason)
            raise
        async with self.ctx.db.uow() as uow:
            if not await uow.claim(delivery.consumer, event):
                return
            uow.session.add(EvaluationRow(**outcome.row, created_at=datetime.now(UTC)))
            await uow.publish(*outcome.events)
            await uow.commit()
        log.info("evaluation committed", outcome=outcome.row["outcome"])

    async def _already_applied(self, consumer: str, event: Event) -> bool:
        async with self.ctx.db.uow() as uow:
            found = await uow.session.get(InboxRow, (consumer, str(event.event_id)))
        return found is not None

    async def _fail_cycle(self, event: Event, delivery: Delivery, task: str, reason: str) -> None:
        async with self.ctx.db.uow() as uow:
            if not await uow.claim(delivery.consumer, event):
                return
            await uow.publish(
                event.caused(
                    CycleFailed, producer=NAME, task_name=task, stage="evaluation", reason=reason
                )
            )
            await uow.commit()

    async def _inputs(self, spec_ref: ArtifactRef, consumer: str, event: Event) -> Inputs:
        try:
            spec = spec_from_json(await self.reader.get(spec_ref, "task spec"))
            golden_ref = spec.ref("golden_set")
        except (TaskSpecError, ValueError) as exc:
            raise PermanentError(f"task spec {spec_ref.uri}: {exc}") from exc
        probes: list[ProbeRow] = []
        try:
            rows = parse_jsonl(await self.reader.get(golden_ref, "golden set"), GoldenRow, "golden")
            if spec.probe_set is not None:
                data = await self.reader.get(spec.ref("probe_set"), "probe set")
                probes = parse_jsonl(data, ProbeRow, "probe set")
        except DataError as exc:
            raise PermanentError(str(exc)) from exc
        general = None
        if spec.general_text is not None:
            general = (await self.reader.get(spec.ref("general_text"), "general text")).decode()
        s = self.settings
        setup = digest(
            {
                "version": SETUP_VERSION,
                "instructions": spec.instructions,
                "probe_set": spec.ref("probe_set").sha256 if probes else None,
                "general_text": spec.ref("general_text").sha256 if general else None,
                "window": spec.student.max_seq_len,
                "batch_size": s.batch_size,
                "max_new_tokens": s.max_new_tokens,
                "latency_samples": s.latency_samples,
                "perplexity_max_tokens": s.perplexity_max_tokens,
                "device": s.device,
                "precision": s.precision,
            }
        )
        evaluation_id = uuid.uuid5(NS, f"{consumer}:{event.event_id}")
        return Inputs(spec, golden_ref, rows, probes, general, setup, evaluation_id)

    def worker_payload(self, inputs: Inputs) -> dict[str, Any]:
        s = self.settings
        return {
            "instructions": inputs.spec.instructions,
            "golden": [{"id": r.id, "input": r.input} for r in inputs.rows],
            "probes": [{"id": p.id, "prompt": p.prompt} for p in inputs.probes],
            "general_text": inputs.general_text,
            "batch_size": s.batch_size,
            "max_new_tokens": s.max_new_tokens,
            "latency_samples": s.latency_samples,
            "window": inputs.spec.student.max_seq_len,
            "perplexity_max_tokens": s.perplexity_max_tokens,
            "device": s.device,
            "precision": s.precision,
        }

    async def teacher_results(self, inputs: Inputs, delivery: Delivery) -> tuple[dict, bool]:
        """The teacher's answers on the golden set: cached, or asked (each request cached)."""
        spec = inputs.spec
        check_residency(spec, self.ctx.settings.allowed_teacher_hosts)
        key = teacher_key(spec.teacher)
        setup = digest({"instructions": spec.instructions, "max": self.settings.teacher_max_tokens})
        golden = inputs.golden_ref.sha256
        cached = await self.cache.get(key, golden, setup)
        if cached is not None:
            return cached, True
        client = self.teacher(spec)
        try:
            async with delivery.heartbeat():
                answers = await client.answer_golden(spec.instructions, inputs.rows)
        finally:
            await client.close()
        result = teacher_result(inputs.rows, answers)
        await self.cache.put(key, golden, setup, "teacher", result)
        return result, False

    def teacher(self, spec: TaskSpec) -> TeacherClient:
        return TeacherClient(
            spec.teacher,
            self.ctx.db,
            max_tokens=self.settings.teacher_max_tokens,
            spec_hosts=spec.residency.allowed_teacher_hosts,
            operator_hosts=self.ctx.settings.allowed_teacher_hosts,
        )

    async def local_results(
        self, inputs: Inputs, models: list[LocalModel], delivery: Delivery
    ) -> tuple[dict[str, dict[str, Any]], set[str]]:
        """Each local model's results, from the cache or from one worker run for the rest."""
        golden = inputs.golden_ref.sha256
        results: dict[str, dict[str, Any]] = {}
        for m in models:
            found = await self.cache.get(m.key, golden, inputs.setup)
            if found is not None:
                results[m.key] = found
        cached = set(results)
        missing = [m for m in models if m.key not in results]
        if missing:
            fresh = await run_local(
                missing,
                self.worker_payload(inputs),
                reader=self.reader,
                work_dir=self.work_dir,
                delivery=delivery,
                log_name=str(inputs.evaluation_id),
            )
            for m in missing:
                await self.cache.put(m.key, golden, inputs.setup, "local", fresh[m.key])
                results[m.key] = fresh[m.key]
        return results, cached

    async def source_evaluation(self, adapter_sha: str, golden_sha: str) -> SourceVerdict | None:
        """The latest verdict on an unquantized adapter, on the same golden set."""
        async with self.ctx.db.uow() as uow:
            row = await uow.session.scalar(
                select(EvaluationRow)
                .where(
                    EvaluationRow.candidate_sha256 == adapter_sha,
                    EvaluationRow.candidate_kind == "adapter",
                    EvaluationRow.golden_sha256 == golden_sha,
                )
                .order_by(EvaluationRow.id.desc())
                .limit(1)
            )
            if row is None:
                return None
            return SourceVerdict(row.evaluation_id, row.iteration, row.quality, row.report)
