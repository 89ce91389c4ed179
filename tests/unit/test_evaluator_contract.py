"""The worker contract is typed both ways, and the checks prepare makes before any work."""

from __future__ import annotations

import subprocess
import sys
import uuid
from pathlib import Path

import pytest
from pydantic import ValidationError

from evaluator import candidate, quantized
from evaluator.contract import EvalPayload, EvalResult, GoldenInput, LocalOutputs, ModelToRun
from evaluator.worker import evaluate
from shared.events.base import ArtifactRef
from shared.events.catalog import QuantizationCompleted, TrainingCompleted
from shared.runtime.worker import _payload_model


def ref(char: str) -> ArtifactRef:
    return ArtifactRef(uri=f"file://{char}", sha256=char * 64, size_bytes=1, media_type="x")


def payload() -> EvalPayload:
    return EvalPayload(
        models=[ModelToRun(key="k", model_dir=Path("/m"), adapter_dir=None)],
        instructions="Route it.",
        golden=[GoldenInput(id="g1", input="printer jammed")],
        batch_size=8,
        max_new_tokens=16,
        latency_samples=1,
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
        compute_s_per_example=0.003,
        probe_replies={},
        perplexity=None,
        device="cpu",
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
