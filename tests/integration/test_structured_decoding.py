"""Structured decoding on transformers with a real (tiny, random-weight) model.

A random model knows nothing about JSON, so every valid reply below is the grammar's doing;
the free-decoding control shows the same model, unconstrained, does not produce them.
Batches mix short and long prompts, so rows are left-padded by different amounts.
"""

from __future__ import annotations

import json
from pathlib import Path

import jsonschema
import pytest

from evaluator import ml
from evaluator.contract import EvalPayload, GoldenInput, ModelToRun
from evaluator.worker import evaluate
from shared.models import decoding

SCHEMA = {
    "type": "object",
    "properties": {
        "label": {"enum": ["refund", "bug report", "other"]},
        "urgent": {"type": "boolean"},
    },
    "required": ["label", "urgent"],
    "additionalProperties": False,
}
INPUTS = [
    "hi",
    "My card reader shows error E42 on every payment and we cannot sell anything today.",
    "refund please",
    "The stock count is wrong after the last update, and the supplier order was sent twice, "
    "so we have far too many boxes of oat milk in the back room now.",
    "?",
    "Can the till print receipts in German?",
]
MAX_NEW = 48


@pytest.fixture(scope="module")
def loaded(tiny_model_dir: Path):
    model, tokenizer = ml.load(tiny_model_dir, None, "cpu", "fp32")
    return model, tokenizer, ml.grammar_for(model, tokenizer, SCHEMA)


def prompts(tokenizer) -> list[str]:
    return ml.chat_prompts(tokenizer, "Label the ticket.", INPUTS)


def test_every_batched_reply_validates_and_stops_at_eos(loaded):
    import torch

    model, tokenizer, grammar = loaded
    texts = prompts(tokenizer)
    batch = tokenizer(texts, return_tensors="pt", padding=True, add_special_tokens=False)
    assert len(set(batch["attention_mask"].sum(1).tolist())) > 1, "rows must pad differently"
    stops = decoding.stop_token_ids(grammar)
    processor = decoding.GrammarLogitsProcessor(grammar, len(texts))
    with torch.inference_mode():
        out = model.generate(
            **batch,
            max_new_tokens=MAX_NEW,
            do_sample=False,
            pad_token_id=tokenizer.pad_token_id,
            eos_token_id=stops,
            logits_processor=[processor],
        )
    new = out[:, batch["input_ids"].shape[1] :].tolist()
    for row in new:
        # The object, then a stop token: the reply ended because the grammar closed it.
        assert stops[0] in row, "no stop token within max_new_tokens"
        reply = tokenizer.decode(row[: row.index(stops[0])])
        jsonschema.validate(json.loads(reply), SCHEMA)
    # generate returned as soon as every row had stopped, not at the token budget.
    assert len(new[0]) < MAX_NEW


def test_the_evaluator_paths_agree_under_the_grammar(loaded):
    model, tokenizer, grammar = loaded
    texts = prompts(tokenizer)
    gen = {"max_new_tokens": MAX_NEW, "grammar": grammar}
    batched = ml.generate_batched(model, tokenizer, texts, batch_size=4, **gen)
    single = ml.generate_single(model, tokenizer, texts, **gen)
    concurrent = ml.generate_concurrent(model, tokenizer, texts, concurrency=4, **gen)
    for path in (batched, single, concurrent):
        for g in path:
            jsonschema.validate(json.loads(g.text), SCHEMA)
    # fp32 greedy decoding: padding does not move a reply.
    assert [g.text for g in batched] == [g.text for g in single] == [g.text for g in concurrent]


def test_free_decoding_of_the_same_model_is_not_valid_json(loaded):
    model, tokenizer, _ = loaded
    free = ml.generate_batched(
        model, tokenizer, prompts(tokenizer), batch_size=4, max_new_tokens=16
    )

    def valid(text: str) -> bool:
        try:
            jsonschema.validate(json.loads(text), SCHEMA)
        except (ValueError, jsonschema.ValidationError):
            return False
        return True

    assert not any(valid(g.text) for g in free)


def test_the_worker_decodes_under_the_schema_with_each_models_prompt(tiny_model_dir: Path):
    golden = [GoldenInput(id=f"g{i}", input=text) for i, text in enumerate(INPUTS)]
    student = "Label it."
    full = "You label support tickets for a shop. " * 20
    payload = EvalPayload(
        models=[
            ModelToRun(
                key="cand", model_dir=tiny_model_dir, prompt="student", system_prompt=student
            ),
            ModelToRun(
                key="base", model_dir=tiny_model_dir, prompt="instructions", system_prompt=full
            ),
        ],
        golden=golden,
        output_schema=SCHEMA,
        batch_size=4,
        max_new_tokens=MAX_NEW,
        latency_samples=None,
        latency_concurrency=3,
        window=64,
        perplexity_max_tokens=0,
        device="cpu",
        precision="fp32",
    )
    result = evaluate(payload, lambda update: None).results
    cand, base = result["cand"], result["base"]
    for out in (cand, base):
        assert out.decoding == "json_schema" and out.dtype == "fp32"
        for reply in out.replies.values():
            jsonschema.validate(json.loads(reply), SCHEMA)
        assert len(out.latency_ms_single) == len(out.latency_ms_concurrent) == len(golden)
        assert out.latency.single.n == out.latency.concurrent.n == len(golden)
        assert out.latency.concurrency == 3
        assert out.latency.single.p50_ms <= out.latency.single.p95_ms
        # Each request of a group waits the group's wall time: groups of 3, 3.
        assert len(set(out.latency_ms_concurrent[:3])) == 1
        assert out.prompt_tokens_summary.max == max(out.prompt_tokens)
    assert (cand.prompt, base.prompt) == ("student", "instructions")
    # Same inputs, another system prompt: every row longer by the same number of tokens.
    extra = {b - c for b, c in zip(base.prompt_tokens, cand.prompt_tokens, strict=True)}
    assert len(extra) == 1 and extra.pop() > 100
