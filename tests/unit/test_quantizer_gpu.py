"""vLLM-native variants without a GPU: recipes and calibration data build on CPU, and each
variant is reported skipped with a reason rather than made up."""

from __future__ import annotations

import json

import pytest

from quantizer import gpu, vllm_engine, worker
from quantizer.contract import PlannedVariant, QuantizeJob


def test_recipes_per_scheme():
    w4 = gpu.recipe("W4A16")
    assert (w4.modifier, w4.needs_calibration) == ("GPTQModifier", True)
    assert w4.arguments == {"targets": "Linear", "scheme": "W4A16", "ignore": ["lm_head"]}
    assert gpu.recipe("W8A16").arguments["scheme"] == "W8A16"
    fp8 = gpu.recipe("FP8_DYNAMIC")
    assert (fp8.modifier, fp8.needs_calibration) == ("QuantizationModifier", False)
    with pytest.raises(ValueError, match="no llm-compressor recipe"):
        gpu.recipe("Q4_K_M")


class Template:
    """Renders chat messages as role-tagged lines: enough to see what was rendered."""

    def apply_chat_template(self, messages, tokenize=False):
        return "".join(f"<{m['role']}>{m['content']}" for m in messages)


def test_calibration_is_a_seeded_sample_of_training_rows_as_the_student_saw_them():
    rows = [
        {"messages": [{"role": "system", "content": "S"}, {"role": "user", "content": f"q{i}"}]}
        for i in range(50)
    ] + [{"input": "plain", "output": "{}"}]
    data = "".join(json.dumps(r) + "\n" for r in rows).encode()
    first = gpu.calibration_texts(data, "student prompt", Template(), rows=8, seed=3)
    assert first == gpu.calibration_texts(data, "student prompt", Template(), rows=8, seed=3)
    assert len(first) == 8 and len(set(first)) == 8
    assert all(t.startswith("<system>S<user>q") for t in first if "plain" not in t)
    everything = gpu.calibration_texts(data, "student prompt", Template(), rows=500)
    assert "<system>student prompt<user>plain<assistant>{}" in everything
    assert len(everything) == 51
    with pytest.raises(ValueError, match="no training rows"):
        gpu.calibration_texts(b"\n", "s", Template(), rows=4)


def _job(tmp_path, **overrides) -> QuantizeJob:
    fields = dict(
        base_dir=str(tmp_path),
        adapter_dir=str(tmp_path),
        out_dir=str(tmp_path),
        converter="unused",
        variants=[],
        system_prompt="s",
        output_schema=None,
        golden=[],
        timed_rows=[],
        max_new_tokens=1,
        merge_tolerance=1e-3,
        threads=1,
        context=128,
    )
    return QuantizeJob(**(fields | overrides))


def _plan(scheme: str) -> PlannedVariant:
    return PlannedVariant(
        name=scheme, engine="vllm", method="m", kind="compressed-tensors", scheme=scheme
    )


@pytest.mark.skipif(gpu.cuda_available(), reason="this machine has a GPU")
def test_without_cuda_each_vllm_variant_is_skipped_with_the_reason(tmp_path):
    job = _job(tmp_path)
    for scheme in ("W8A16", "W4A16", "FP8_DYNAMIC"):
        out = worker._vllm_variant(job, _plan(scheme), tmp_path, Template(), None)
        assert out.status == "skipped" and out.path is None and out.size_bytes is None
        assert out.reason.startswith("skipped: needs a GPU")
    assert not list(tmp_path.iterdir()), "nothing was written"


def test_on_a_gpu_gptq_without_training_rows_is_skipped_with_why(tmp_path, monkeypatch):
    monkeypatch.setattr(gpu, "skip_reason", lambda: None)  # as on a machine with CUDA
    job = _job(tmp_path, calibration_missing="the adapter's manifest names no train split")
    out = worker._vllm_variant(job, _plan("W4A16"), tmp_path, Template(), None)
    assert out.status == "skipped"
    assert out.reason == (
        "skipped: no training rows to calibrate on (the adapter's manifest names no train split)"
    )


def test_on_a_gpu_gptq_calibrates_on_a_sample_of_the_train_split(tmp_path, monkeypatch):
    monkeypatch.setattr(gpu, "skip_reason", lambda: None)
    train = tmp_path / "train.jsonl"
    train.write_text(
        "".join(json.dumps({"input": f"q{i}", "output": "{}"}) + "\n" for i in range(9))
    )
    seen = {}

    class Stop(Exception):
        pass

    def compress(merged, dest, scheme, texts, max_len):  # llm-compressor itself needs CUDA
        seen.update(scheme=scheme, texts=list(texts), max_len=max_len)
        raise Stop

    monkeypatch.setattr(gpu, "compress", compress)
    job = _job(tmp_path, calibration_path=str(train), calibration_rows=4, max_seq_len=384)
    out = worker._vllm_variant(job, _plan("W4A16"), tmp_path, Template(), None)
    # A GPU step that fails is this variant's failure, with the cause, not the whole job's.
    assert out.status == "failed" and "Stop" in out.reason
    assert seen["scheme"] == "W4A16" and seen["max_len"] == 384
    assert len(seen["texts"]) == 4
    assert all(
        t.startswith("<system>s<user>q") and t.endswith("<assistant>{}") for t in seen["texts"]
    )


def test_vllm_runs_greedy_under_the_same_schema_as_the_other_engines(tmp_path):
    schema = {"type": "object", "properties": {"a": {"type": "string"}}, "required": ["a"]}
    assert vllm_engine.sampling_args(schema, 64) == {
        "temperature": 0.0,
        "max_tokens": 64,
        "structured_outputs": {"json": schema},
    }
    assert "structured_outputs" not in vllm_engine.sampling_args(None, 8)
    args = vllm_engine.engine_args(tmp_path / "w4a16", 2048)
    assert args["model"] == str(tmp_path / "w4a16") and args["max_model_len"] == 2048
    # Sampling defaults are vLLM's, as the deployer's `vllm serve --generation-config vllm`.
    assert args["generation_config"] == "vllm"


def test_on_a_gpu_an_empty_train_split_skips_gptq_with_why(tmp_path, monkeypatch):
    monkeypatch.setattr(gpu, "skip_reason", lambda: None)
    empty = tmp_path / "train.jsonl"
    empty.write_text("\n")
    job = _job(tmp_path, calibration_path=str(empty))
    out = worker._vllm_variant(job, _plan("W8A16"), tmp_path, Template(), None)
    assert out.status == "skipped" and "cannot calibrate: no training rows" in out.reason
