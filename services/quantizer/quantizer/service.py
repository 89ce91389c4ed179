"""The quantizer's stage: a passing adapter in, its variants judged and one chosen out.

- prepare: only a passing adapter's evaluation.completed is taken (anything else is claimed
  and answered with nothing); read the spec, golden set and the evaluation report (which
  names the base model); fetch base and adapter, sha-verified. A missing or corrupt artifact
  is permanent here;
- work: one worker process merges, converts and measures every variant (worker.py); this
  process then stores the merged model and the GGUF files, scores the replies (golden.py),
  judges each variant and chooses (domain.py), and stores the report;
- record: the run and variant rows and `variant.selected`, committed by the template with
  the claim; or, when no form (variant or merged model) passes the task's serving gates
  (latency, latency and cost against the teacher), the rows and `cycle.failed` with every
  form's figures: more training data cannot make the model faster or cheaper.

Giving up is the template's: a corrupt adapter, an architecture llama.cpp cannot convert or a
failed conversion ends the cycle (dead letter + cycle.failed, stage "quantization").
"""

from __future__ import annotations

import asyncio
import json
import shutil
from dataclasses import dataclass
from functools import partial
from pathlib import Path

from shared.artifacts import ArtifactError, AsyncArtifactStore
from shared.bus import PermanentError
from shared.db import Database, UnitOfWork
from shared.events import Event
from shared.events.base import ArtifactRef
from shared.events.catalog import CycleFailed, EvaluationCompleted
from shared.events.quantization import VariantSelected
from shared.models import ModelFormatError, fetch_model_dir, read_manifest
from shared.runtime.stage import Stage, StageRun
from shared.tasks.load import TaskSpecError, spec_from_json
from shared.tasks.spec import TaskSpec

from . import domain, golden
from .contract import PlannedVariant, QuantizeJob, QuantizeResult, Row
from .outcome import Outcome, conclude
from .repository import add_choice, add_failure, add_rejection
from .settings import QuantizerSettings


@dataclass(frozen=True)
class Deps:
    db: Database
    artifacts: AsyncArtifactStore
    settings: QuantizerSettings
    work_dir: Path
    # Each quantization holds a model or two in memory; one at a time per process.
    worker_slots: asyncio.Semaphore


@dataclass(frozen=True)
class Job:
    event: EvaluationCompleted
    spec: TaskSpec
    rows: list[golden.GoldenRow]
    base: ArtifactRef
    base_dir: Path
    adapter_dir: Path
    plan: list[domain.VariantPlan]
    # The adapter's train split, for GPTQ calibration of the vLLM-native variants.
    calibration: Path | None = None
    calibration_missing: str = ""


def stages(deps: Deps) -> list[Stage]:
    return [
        Stage(
            "quantization",
            EvaluationCompleted,
            prepare=partial(prepare, deps),
            work=partial(work, deps),
            record=record,
            on_give_up=add_failure,
            ends_cycle=True,
            concurrency=1,
            description="evaluation.completed (passing adapter) -> variant.selected",
        )
    ]


def wanted(event: EvaluationCompleted) -> bool:
    return event.passed and event.candidate_kind == "adapter"


async def prepare(deps: Deps, event: EvaluationCompleted, run: StageRun) -> Job | None:
    if not wanted(event):
        return None  # a failed or quantized candidate: the deployer's business, not ours
    try:
        spec = spec_from_json(await deps.artifacts.get_bytes(event.task_spec))
        if not spec.quantization:
            # The spec asks for no quantization: the deployer ships the adapter itself, gated
            # at evaluation on the transformers figures it will serve with.
            return None
        rows = golden.parse_golden(await deps.artifacts.get_bytes(spec.ref("golden_set")))
        report = json.loads(await deps.artifacts.get_bytes(event.report))
        base = ArtifactRef.model_validate(report["base_model"])
        plan = domain.plan([*deps.settings.always, *spec.quantization])
        folder = deps.work_dir / "models"
        adapter_dir = await asyncio.to_thread(
            fetch_model_dir, deps.artifacts.sync, event.candidate, folder / event.candidate.sha256
        )
        manifest = await asyncio.to_thread(read_manifest, deps.artifacts.sync, event.candidate)
        if manifest.get("base_model") != base.sha256:
            raise PermanentError(
                f"adapter {event.candidate.sha256[:12]} was trained on base "
                f"{str(manifest.get('base_model'))[:12]}, not on {base.sha256[:12]}"
            )
        base_dir = await asyncio.to_thread(
            fetch_model_dir, deps.artifacts.sync, base, folder / base.sha256
        )
    except (ArtifactError, ModelFormatError, TaskSpecError, golden.GoldenError) as exc:
        raise PermanentError(
            f"cannot quantize adapter {event.candidate.sha256[:12]}: {exc}"
        ) from exc
    except (KeyError, ValueError) as exc:  # a report without base_model, a bad target
        raise PermanentError(
            f"cannot quantize adapter {event.candidate.sha256[:12]}: {exc!r}"
        ) from exc
    calibration, missing = await _calibration_rows(deps, plan, manifest, folder)
    return Job(event, spec, rows, base, base_dir, adapter_dir, plan, calibration, missing)


async def _calibration_rows(
    deps: Deps, plan: list[domain.VariantPlan], manifest: dict, folder: Path
) -> tuple[Path | None, str]:
    """The train split the adapter was trained on (its manifest names it), or why not.

    Only the vLLM-native variants use it, and only on a GPU: a split that cannot be had skips
    those variants with the reason instead of failing the CPU ones."""
    if all(p.kind == "gguf" for p in plan):
        return None, "no vLLM-native variant planned"
    raw = (manifest.get("extra") or {}).get("train_split")
    if raw is None:
        return None, "the adapter's manifest names no train split"
    try:
        ref = ArtifactRef.model_validate(raw)
        path = await deps.artifacts.get_file(ref, folder / f"train-{ref.sha256}.jsonl")
    except (ArtifactError, ValueError) as exc:
        return None, f"the train split could not be fetched: {exc}"
    return path, ""


def payload(deps: Deps, job: Job) -> QuantizeJob:
    s = deps.settings
    ids = [r.id for r in job.rows]
    timed = ids if s.latency_samples is None else ids[: s.latency_samples]
    return QuantizeJob(
        base_dir=str(job.base_dir),
        adapter_dir=str(job.adapter_dir),
        out_dir=str(deps.work_dir / "runs" / str(job.event.event_id)),
        converter=str(s.converter),
        variants=[PlannedVariant(**vars(p)) for p in job.plan],
        system_prompt=job.spec.student_prompt,
        output_schema=job.spec.output_schema,
        golden=[Row(id=r.id, prompt_input=r.input) for r in job.rows],
        timed_rows=timed,
        max_new_tokens=s.max_new_tokens,
        merge_tolerance=s.merge_tolerance,
        threads=s.threads,
        context=s.context,
        max_seq_len=job.spec.student.max_seq_len,
        calibration_path=None if job.calibration is None else str(job.calibration),
        calibration_missing=job.calibration_missing,
        calibration_rows=s.calibration_rows,
    )


async def work(deps: Deps, job: Job | None, run: StageRun) -> Outcome | None:
    if job is None:
        return None
    log_path = deps.work_dir / "logs" / f"{job.event.event_id}.log"
    log_path.parent.mkdir(parents=True, exist_ok=True)
    job_payload = payload(deps, job)
    async with deps.worker_slots:
        result = await run.process(
            "quantizer.worker:quantize", job_payload, QuantizeResult, log_path=log_path
        )
    outcome = await conclude(deps.artifacts, deps.settings, job, result)
    # Everything worth keeping is in the artifact store now; a redelivery makes it again.
    await asyncio.to_thread(shutil.rmtree, job_payload.out_dir, True)
    return outcome


async def record(uow: UnitOfWork, job: Job | None, outcome: Outcome | None) -> list[Event]:
    if job is None or outcome is None:
        return []
    if outcome.chosen is None:
        # A verdict, not an error: every form was measured and none can serve within the
        # task's latency and cost gates. No dead letter; the cycle ends with the figures.
        ended = job.event.caused(
            CycleFailed,
            producer="quantizer",
            task_name=job.event.task_name,
            stage="quantization",
            reason=outcome.reason[:4000],  # every form's reason can outgrow the event's limit
        )
        await add_rejection(uow, job.event, outcome)
        return [ended]
    answer = job.event.caused(
        VariantSelected,
        producer="quantizer",
        task_name=job.event.task_name,
        task_version=job.event.task_version,
        task_spec=job.event.task_spec,
        iteration=job.event.iteration,
        evaluation_id=job.event.evaluation_id,
        source_adapter=job.event.candidate,
        base_model=job.base,
        **outcome.fields(),
    )
    await add_choice(uow, answer)
    return [answer]
