"""The micro-batch plan: the spec's effective batch kept, split to fit the memory there is."""

from __future__ import annotations

from types import SimpleNamespace

import pytest

from trainer.memory import (
    Shape,
    bytes_per_token,
    estimate_peak,
    fit_micro_batch,
    memory_budget,
    plan_batches,
)

# SmolLM2-135M's shape (its config.json).
SMOLLM2 = Shape(parameters=134_515_008, hidden=576, intermediate=1536, layers=30, vocab=49152)
FP32_GC = {"precision": "fp32", "gradient_checkpointing": True, "quantize": "none"}
GiB = 2**30


@pytest.mark.parametrize(
    ("batch", "accumulation", "limit", "expected"),
    [
        (8, 1, 8, (8, 1)),  # everything fits: untouched
        (8, 1, 5, (4, 2)),  # 5 does not divide 8: the next divisor down
        (2, 4, 2, (2, 4)),
        (8, 2, 3, (2, 8)),
        (6, 1, 0, (1, 6)),  # nothing fits: one sequence at a time, torch has the last word
    ],
)
def test_the_effective_batch_is_kept_and_split_into_what_fits(batch, accumulation, limit, expected):
    micro, steps = fit_micro_batch(batch, accumulation, lambda m: m <= limit)
    assert (micro, steps) == expected
    assert micro * steps == batch * accumulation


def test_checkpointing_and_bf16_lower_the_estimate():
    fp32_gc = bytes_per_token(SMOLLM2, "fp32", checkpointing=True)
    assert bytes_per_token(SMOLLM2, "fp32", checkpointing=False) > 1.5 * fp32_gc
    assert bytes_per_token(SMOLLM2, "bf16", checkpointing=True) < fp32_gc


def test_a_batch_that_ran_out_of_24_gib_is_split_and_a_small_one_is_not():
    # The finding behind the plan: 8 SmolLM2 conversations of ~1k tokens did not fit 24 GiB.
    budget = int(0.7 * 22 * GiB)
    no_gc = {**FP32_GC, "gradient_checkpointing": False}
    assert estimate_peak(SMOLLM2, no_gc, 8, 1024) > budget
    planned = plan_batches(SMOLLM2, no_gc, 8, 1, 1024, budget)
    assert planned["micro_batch"] < 8
    assert planned["micro_batch"] * planned["gradient_accumulation_steps"] == 8
    assert planned["estimated_peak_mib"] * 2**20 <= budget
    small = plan_batches(SMOLLM2, FP32_GC, 8, 1, 128, budget)
    assert (small["micro_batch"], small["gradient_accumulation_steps"]) == (8, 1)


def test_shape_reads_a_transformers_config():
    config = SimpleNamespace(
        hidden_size=64, intermediate_size=128, num_hidden_layers=2, vocab_size=100
    )
    assert Shape.of(config, 1000) == Shape(1000, 64, 128, 2, 100)


def test_an_explicit_budget_wins_and_the_default_is_a_share_of_free_memory():
    assert memory_budget(512) == 512 * 2**20
    assert memory_budget(None) > 0
