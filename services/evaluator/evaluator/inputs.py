"""What every evaluation reads from its task spec, fetched and checked once in prepare.

Any input that cannot be read or does not validate is a PermanentError: retrying cannot fix
a bad spec or a malformed golden set.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from typing import Any

from shared.bus import PermanentError
from shared.events.base import ArtifactRef
from shared.tasks.load import TaskSpecError, spec_from_json
from shared.tasks.spec import TaskSpec

from .contract import EvalPayload, GoldenInput, ModelToRun, ProbePrompt
from .data import GoldenRow, ProbeRow, parse_jsonl
from .results import ArtifactReader, FetchedModel, digest
from .settings import EvaluatorSettings

# evaluation_id = uuid5(NS, consumer:event_id): a redelivered job names the same evaluation.
NS = uuid.UUID("0f6c7f8e-5b8e-4c57-9d0a-2f4a3f1e9b21")
# 2: per-model prompts, structured decoding, latency over every row and concurrent latency.
SETUP_VERSION = 2


@dataclass(frozen=True)
class Inputs:
    spec: TaskSpec
    golden_ref: ArtifactRef
    rows: list[GoldenRow]
    probes: list[ProbeRow]
    general_text: str | None
    setup: str  # the results cache's key for everything but the model and the golden set
    evaluation_id: uuid.UUID


def evaluation_id(consumer: str, event_id: uuid.UUID) -> uuid.UUID:
    return uuid.uuid5(NS, f"{consumer}:{event_id}")


async def read_inputs(
    reader: ArtifactReader, settings: EvaluatorSettings, spec_ref: ArtifactRef, eid: uuid.UUID
) -> Inputs:
    try:
        spec = spec_from_json(await reader.get(spec_ref, "task spec"))
        golden_ref = spec.ref("golden_set")
    except (TaskSpecError, ValueError) as exc:
        raise PermanentError(f"task spec {spec_ref.uri}: {exc}") from exc
    probes: list[ProbeRow] = []
    general = None
    try:
        rows = parse_jsonl(await reader.get(golden_ref, "golden set"), GoldenRow, "golden")
        if spec.probe_set is not None:
            data = await reader.get(spec.ref("probe_set"), "probe set")
            probes = parse_jsonl(data, ProbeRow, "probe set")
        if spec.general_text is not None:
            general = (await reader.get(spec.ref("general_text"), "general text")).decode()
    except ValueError as exc:  # DataError, an unresolved ref, general text that is not UTF-8
        raise PermanentError(str(exc)) from exc
    s = settings
    setup = digest(
        {
            "version": SETUP_VERSION,
            "instructions": spec.instructions,
            "student_prompt": spec.student_prompt,
            "output_schema": output_schema(spec, s),
            "probe_set": spec.ref("probe_set").sha256 if probes else None,
            "general_text": spec.ref("general_text").sha256 if general else None,
            "window": spec.student.max_seq_len,
            "batch_size": s.batch_size,
            "max_new_tokens": s.max_new_tokens,
            "latency_samples": s.latency_samples,
            "latency_concurrency": s.latency_concurrency,
            "perplexity_max_tokens": s.perplexity_max_tokens,
            "device": s.device,
            "precision": s.precision,
        }
    )
    return Inputs(spec, golden_ref, rows, probes, general, setup, eid)


def output_schema(spec: TaskSpec, settings: EvaluatorSettings) -> dict[str, Any] | None:
    """The schema golden replies are decoded under, or None for free decoding."""
    return spec.output_schema if settings.structured_decoding else None


def model_to_run(spec: TaskSpec, model: FetchedModel) -> ModelToRun:
    """The model with its system prompt.

    Every student (the candidate adapter, a merged or quantized variant) runs with the short
    student prompt it was trained with and will be served with. The base model runs with the
    teacher's full instructions: the fair "no distillation" baseline is the base model given
    everything the teacher is given, not a one-line prompt it was never tuned on. The base is
    the spec's student.base_model_ref run without an adapter.
    """
    base = spec.student.base_model_ref
    is_base = model.adapter_dir is None and base is not None and model.key == base.sha256
    return ModelToRun(
        key=model.key,
        model_dir=model.model_dir,
        adapter_dir=model.adapter_dir,
        prompt="instructions" if is_base else "student",
        system_prompt=spec.instructions if is_base else spec.student_prompt,
    )


def worker_payload(
    inputs: Inputs, settings: EvaluatorSettings, models: list[FetchedModel]
) -> EvalPayload:
    s = settings
    return EvalPayload(
        models=[model_to_run(inputs.spec, m) for m in models],
        output_schema=output_schema(inputs.spec, s),
        golden=[GoldenInput(id=r.id, input=r.input) for r in inputs.rows],
        probes=[ProbePrompt(id=p.id, prompt=p.prompt) for p in inputs.probes],
        general_text=inputs.general_text,
        batch_size=s.batch_size,
        max_new_tokens=s.max_new_tokens,
        latency_samples=s.latency_samples,
        latency_concurrency=s.latency_concurrency,
        window=inputs.spec.student.max_seq_len,
        perplexity_max_tokens=s.perplexity_max_tokens,
        device=s.device,
        precision=s.precision,
    )
