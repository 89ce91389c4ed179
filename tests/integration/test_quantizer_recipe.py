"""The quantizer's recipe on a tiny random llama, with real peft, llama.cpp and xgrammar:
the merge matches base+adapter, each GGUF variant is made, loads in llama.cpp and answers
schema-valid JSON under the task's grammar; bad input is refused as permanent."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from quantizer import golden, ml, worker
from quantizer.contract import PlannedVariant, QuantizeJob, Row
from quantizer.domain import plan
from quantizer.settings import DEFAULT_CONVERTER
from shared.bus.errors import PermanentError

SCHEMA = {
    "type": "object",
    "properties": {
        "team": {"enum": ["it", "billing", "none"]},
        "priority": {"enum": ["low", "escalate"]},
    },
    "required": ["team", "priority"],
}
GOLDEN = [
    ("g1", "My printer is jammed again", '{"team": "it", "priority": "low"}'),
    ("g2", "I was charged twice", '{"team": "billing", "priority": "low"}'),
    ("g3", "What is the weather?", '{"team": "none", "priority": "escalate"}'),
]
needs_llama = pytest.mark.skipif(
    not DEFAULT_CONVERTER.is_file(), reason="llama.cpp's converter is not unpacked (make setup)"
)


def make_adapter(base: Path, dest: Path, seed: int = 0) -> Path:
    """A LoRA adapter with random (non-zero) B: it changes the model, so a merge that dropped
    it would show."""
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    torch.manual_seed(seed)
    config = LoraConfig(r=8, lora_alpha=16, target_modules="all-linear", init_lora_weights=False)
    get_peft_model(AutoModelForCausalLM.from_pretrained(str(base)), config).save_pretrained(dest)
    return dest


@pytest.fixture(scope="module")
def adapter_dir(tiny_model_dir: Path, tmp_path_factory) -> Path:
    return make_adapter(tiny_model_dir, tmp_path_factory.mktemp("q-adapter") / "adapter")


def job(base: Path, adapter: Path, out: Path, targets: list[str]) -> QuantizeJob:
    return QuantizeJob(
        base_dir=str(base),
        adapter_dir=str(adapter),
        out_dir=str(out),
        converter=str(DEFAULT_CONVERTER),
        variants=[PlannedVariant(**vars(p)) for p in plan(targets)],
        system_prompt="Task: triage. Reply with one JSON object with keys team, priority.",
        output_schema=SCHEMA,
        golden=[Row(id=i, prompt_input=text) for i, text, _ in GOLDEN],
        timed_rows=[i for i, _, _ in GOLDEN],
        max_new_tokens=24,
        merge_tolerance=1e-3,
        threads=2,
        context=256,
    )


def test_merge_matches_base_plus_adapter_and_changes_the_base(
    tiny_model_dir, adapter_dir, tmp_path
):
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    prompts = ["hello there", "route this ticket please"]
    diff = ml.merge(tiny_model_dir, adapter_dir, tmp_path / "merged", prompts, 1e-3)
    assert diff <= 1e-3
    assert (tmp_path / "merged" / "model.safetensors").is_file()
    assert (tmp_path / "merged" / "tokenizer_config.json").is_file()
    tok = AutoTokenizer.from_pretrained(str(tiny_model_dir))
    ids = tok(prompts[0], return_tensors="pt").input_ids
    with torch.no_grad():
        base = AutoModelForCausalLM.from_pretrained(str(tiny_model_dir))(ids).logits
        merged = AutoModelForCausalLM.from_pretrained(str(tmp_path / "merged"))(ids).logits
    assert float((base - merged).abs().max()) > 1e-2, "the adapter's effect is in the merge"


def test_an_adapter_for_another_shape_is_refused(tiny_model_dir, tmp_path):
    from transformers import AutoModelForCausalLM, LlamaConfig, LlamaForCausalLM

    model = AutoModelForCausalLM.from_pretrained(str(tiny_model_dir))
    other = LlamaConfig(**{**model.config.to_dict(), "hidden_size": 32, "intermediate_size": 64})
    LlamaForCausalLM(other).save_pretrained(tmp_path / "other")
    adapter = make_adapter(tmp_path / "other", tmp_path / "adapter")
    with pytest.raises(ml.MergeError, match="does not load onto its base"):
        ml.merge(tiny_model_dir, adapter, tmp_path / "merged", ["hi"], 1e-3)


@needs_llama
def test_each_gguf_variant_is_made_loads_and_answers_schema_valid(
    tiny_model_dir, adapter_dir, tmp_path
):
    out = worker.quantize(
        job(tiny_model_dir, adapter_dir, tmp_path / "run", ["gguf", "int8", "int4"]), print
    )
    by_name = {m.name: m for m in out.variants}
    assert list(by_name) == [
        "merged",
        "gguf-f16",
        "gguf-q8_0",
        "gguf-q4_k_m",
        "vllm-w8a16",
        "vllm-w4a16",
    ]
    rows = [golden.GoldenRow(id=i, input=t, output=o) for i, t, o in GOLDEN]
    sizes = {}
    for name in ("merged", "gguf-f16", "gguf-q8_0", "gguf-q4_k_m"):
        m = by_name[name]
        assert m.status == "evaluated", m.reason
        assert set(m.replies) == {"g1", "g2", "g3"}
        # Every reply parses and fits the schema: the grammar held on every engine.
        assert golden.score(m.replies, rows, "exact_row", SCHEMA)["schema_validity"] == 1.0
        assert m.figures["p95_ms"] > 0 and m.figures["decode_tokens_per_s"] > 0
        sizes[name] = m.size_bytes
    for name in ("gguf-f16", "gguf-q8_0", "gguf-q4_k_m"):
        head = Path(by_name[name].path).read_bytes()[:4]
        assert head == b"GGUF"
    assert sizes["gguf-q8_0"] < sizes["gguf-f16"] < sizes["merged"]
    # F16 answers as the merged model does (greedy, same prompt, same grammar).
    assert by_name["gguf-f16"].replies == by_name["merged"].replies
    for name in ("vllm-w8a16", "vllm-w4a16"):
        assert by_name[name].status == "skipped" and by_name[name].path is None


@needs_llama
def test_the_gguf_carries_the_chat_template_and_tokenizer(tiny_model_dir, adapter_dir, tmp_path):
    from gguf import GGUFReader
    from transformers import AutoTokenizer

    out = worker.quantize(job(tiny_model_dir, adapter_dir, tmp_path / "run", ["int8"]), print)
    [q8] = [m for m in out.variants if m.name == "gguf-q8_0"]
    assert not (tmp_path / "run" / "model-f16.gguf").exists(), "F16 was only the source here"
    fields = GGUFReader(q8.path).fields
    template = bytes(fields["tokenizer.chat_template"].parts[-1]).decode()
    expected = AutoTokenizer.from_pretrained(str(tiny_model_dir)).chat_template
    assert expected and template == expected
    assert len(fields["tokenizer.ggml.tokens"].data) == 49152


@needs_llama
def test_an_architecture_llama_cpp_cannot_convert_is_permanent(
    tiny_model_dir, adapter_dir, tmp_path
):
    base = tmp_path / "base"
    shutil.copytree(tiny_model_dir, base)
    config = json.loads((base / "config.json").read_text())
    (base / "config.json").write_text(json.dumps({**config, "architectures": ["MadeUpForLM"]}))
    with pytest.raises(PermanentError, match="unsupported architecture"):
        worker.quantize(job(base, adapter_dir, tmp_path / "run", ["gguf"]), print)
