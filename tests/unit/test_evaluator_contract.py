"""The worker contract is typed both ways, and the checks prepare makes before any work."""

from __future__ import annotations

import subprocess
import sys
import uuid
from pathlib import Path

import pytest
from pydantic import ValidationError

from evaluator import candidate, quantized
from evaluator.contract import (
    EvalPayload,
    EvalResult,
    GoldenInput,
    Latency,
    LatencySummary,
    LocalOutputs,
    ModelToRun,
    PromptTokens,
)
from evaluator.data import GoldenRow
from evaluator.inputs import Inputs, worker_payload
from evaluator.results import FetchedModel
from evaluator.settings import EvaluatorSettings
from evaluator.worker import evaluate, latency_rows
from shared.events.base import ArtifactRef
from shared.events.catalog import QuantizationCompleted, TrainingCompleted
from shared.models.decoding import response_format
from shared.runtime.worker import _payload_model
from shared.tasks.spec import TaskSpec

SCHEMA = {
    "type": "object",
    "properties": {"team": {"enum": ["it", "billing"]}, "urgent": {"type": "boolean"}},
    "required": ["team", "urgent"],
}


def ref(char: str) -> ArtifactRef:
    return ArtifactRef(uri=f"file://{char}", sha256=char * 64, size_bytes=1, media_type="x")


def payload() -> EvalPayload:
    return EvalPayload(
        models=[
            ModelToRun(
                key="k", model_dir=Path("/m"), prompt="student", system_prompt="Task: route."
            )
        ],
        golden=[GoldenInput(id="g1", input="printer jammed")],
        output_schema=SCHEMA,
        batch_size=8,
        max_new_tokens=16,
        latency_samples=None,
        latency_concurrency=4,
        window=64,
        perplexity_max_tokens=0,
        device="cpu",
        precision="fp32",
    )


def test_the_worker_reads_the_payload_the_service_sends():
    assert _payload_model(evaluate) is EvalPayload
    sent = payload().model_dump(mode="json")  # what run.process writes to the child's stdin
    assert EvalPayload.model_validate(sent) == payload()


def test_a_payload_from_another_version_is_refused():
    with pytest.raises(ValidationError):
        EvalPayload.model_validate({**payload().model_dump(mode="json"), "surprise": 1})


def test_the_result_round_trips_as_the_cache_stores_it():
    outputs = LocalOutputs(
        replies={"g1": "{}"},
        latency_ms_amortised=[3.0],
        latency_ms_single=[9.0],
        latency_ms_concurrent=[20.0],
        latency=Latency(
            single=LatencySummary(n=1, p50_ms=9.0, p95_ms=9.0),
            concurrent=LatencySummary(n=1, p50_ms=20.0, p95_ms=20.0),
            concurrency=4,
        ),
        prompt="student",
        prompt_tokens=[31],
        prompt_tokens_summary=PromptTokens(mean=31.0, max=31),
        decoding="json_schema",
        compute_s_per_example=0.003,
        probe_replies={},
        perplexity=None,
        device="cpu",
        dtype="fp32",
        batch_size=8,
    )
    result = EvalResult(results={"k": outputs})
    assert EvalResult.model_validate(result.model_dump(mode="json")) == result
    with pytest.raises(ValidationError):
        EvalResult.model_validate({"results": {"k": {"replies": {}}}})


def test_the_contract_and_the_service_import_no_torch():
    code = (
        "import sys, evaluator.contract, evaluator.service, evaluator.worker; "
        "sys.exit('torch' in sys.modules)"
    )
    assert subprocess.run([sys.executable, "-c", code], check=False).returncode == 0


def spec(base: ArtifactRef) -> TaskSpec:
    return TaskSpec.model_validate(
        {
            "name": "triage",
            "instructions": "You route support tickets for a shop. " * 30,
            "output_schema": SCHEMA,
            "use_cases": [{"name": "it", "weight": 1}],
            "golden_set": ref("9"),
            "teacher": {"base_url": "http://127.0.0.1:8000/v1", "model": "teacher"},
            "student": {"base_model": "tiny", "base_model_ref": base},
            "residency": {"allowed_teacher_hosts": ["127.0.0.1"]},
        }
    )


def inputs_for(task: TaskSpec) -> Inputs:
    rows = [GoldenRow(id="g1", input="printer jammed", output="{}", use_case="it")]
    return Inputs(task, ref("9"), rows, [], None, "setup", uuid.uuid4())


def test_each_model_gets_its_own_prompt_and_every_student_decodes_under_the_schema():
    base = ref("b")
    task = spec(base)
    fetched = [
        FetchedModel(key=base.sha256, model_dir=Path("/base")),
        FetchedModel(key="c" * 64, model_dir=Path("/base"), adapter_dir=Path("/adapter")),
        FetchedModel(key="f" * 64, model_dir=Path("/variant")),
    ]
    sent = worker_payload(inputs_for(task), EvaluatorSettings(), fetched)
    by_key = {m.key: m for m in sent.models}
    # The base is the no-distillation baseline: the teacher's full instructions.
    assert by_key[base.sha256].prompt == "instructions"
    assert by_key[base.sha256].system_prompt == task.instructions
    # The candidate adapter and a quantized variant are students: the short student prompt.
    for key in ("c" * 64, "f" * 64):
        assert by_key[key].prompt == "student"
        assert by_key[key].system_prompt == task.student_prompt
    assert len(task.student_prompt) * 10 < len(task.instructions)
    assert sent.output_schema == SCHEMA
    assert sent.latency_samples is None and sent.latency_concurrency == 4
    free = worker_payload(inputs_for(task), EvaluatorSettings(structured_decoding=False), fetched)
    assert free.output_schema is None


def test_latency_covers_every_row_unless_capped_and_a_cap_spreads_over_the_set():
    assert EvaluatorSettings().latency_samples is None
    assert latency_rows(5, None) == [0, 1, 2, 3, 4]
    assert latency_rows(5, 9) == [0, 1, 2, 3, 4]
    assert latency_rows(100, 4) == [0, 25, 50, 75]
    assert latency_rows(100, 0) == []


def test_serving_gets_the_same_schema_as_an_openai_response_format():
    body = response_format(SCHEMA, "triage")
    assert body == {
        "type": "json_schema",
        "json_schema": {"name": "triage", "schema": SCHEMA, "strict": True},
    }


def trained(manifest_base: str) -> tuple[dict, TrainingCompleted]:
    event = TrainingCompleted(
        cycle_id=uuid.uuid4(),
        producer="trainer",
        run_id=uuid.uuid4(),
        task_name="triage",
        task_version=1,
        task_spec=ref("a"),
        iteration=1,
        dataset_version="d" * 64,
        base_model=ref("b"),
        adapter=ref("c"),
        report=ref("a"),
    )
    return {"kind": "adapter", "base_model": manifest_base}, event


def test_an_adapter_for_another_base_is_refused_by_name():
    assert candidate.refusal(*trained("b" * 64)) is None
    reason = candidate.refusal(*trained("e" * 64))
    assert reason == "adapter cccccccccccc was trained on base eeeeeeeeeeee, not on bbbbbbbbbbbb"
    manifest, event = trained("b" * 64)
    assert "'model' manifest" in candidate.refusal({**manifest, "kind": "model"}, event)


def test_only_a_transformers_safetensors_variant_can_be_run():
    event = QuantizationCompleted(
        cycle_id=uuid.uuid4(),
        producer="quantizer",
        task_name="triage",
        task_version=1,
        task_spec=ref("a"),
        source_adapter=ref("c"),
        quant_format="gguf",
        model=ref("f"),
    )
    runnable = {"kind": "model", "files": {"config.json": {}, "model.safetensors": {}}}
    assert quantized.refusal(runnable, event) is None
    gguf = {"kind": "model", "files": {"model.gguf": {}}}
    assert "(gguf) is not a transformers safetensors model" in quantized.refusal(gguf, event)
