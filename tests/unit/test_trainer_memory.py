"""The micro-batch plan: the spec's effective batch kept, split to fit the memory there is."""

from __future__ import annotations

from types import SimpleNamespace

import pytest

from trainer.memory import (
    Lengths,
    Shape,
    activation_bytes_per_token,
    estimate_peak,
    fit_micro_batch,
    memory_budget,
    plan_batches,
)

# SmolLM2-135M's shape (its config.json).
SMOLLM2 = Shape(parameters=134_515_008, hidden=576, intermediate=1536, layers=30, vocab=49152)
PLAN = {
    "precision": "fp32",
    "gradient_checkpointing": None,
    "quantize": "none",
    "batching": "grouped",
    "plain_loss": True,
}
GiB = 2**30
BUDGET = int(0.7 * 22 * GiB)  # a 24 GiB machine with ~22 GiB free


def demo_rows(prompt: int, n: int = 64) -> Lengths:
    """Rows like the demo's: a prompt, a ticket of 30-200 tokens, a 34-token answer."""
    return Lengths.of(
        (prompt + 30 + (i * 37) % 170 + 34, 34, prompt + 30 + (i * 37) % 170) for i in range(n)
    )


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
    fp32_gc = activation_bytes_per_token(SMOLLM2, "fp32", checkpointing=True)
    assert activation_bytes_per_token(SMOLLM2, "fp32", checkpointing=False) > 10 * fp32_gc
    assert activation_bytes_per_token(SMOLLM2, "bf16", checkpointing=True) < fp32_gc


def test_a_batch_that_ran_out_of_24_gib_is_split_and_a_small_one_is_not():
    # The finding behind the plan: 8 SmolLM2 conversations of ~1k tokens, logits on every
    # token and no checkpointing, did not fit 24 GiB.
    every_token = {**PLAN, "gradient_checkpointing": False, "plain_loss": False}
    long_rows = Lengths.of([(1024, 40, 980)] * 8)
    tokens, rows = long_rows.worst(8, packed=False, every_token=True)
    assert estimate_peak(SMOLLM2, every_token, tokens, rows, checkpointing=False) > BUDGET
    planned = plan_batches(SMOLLM2, every_token, 8, 1, long_rows, BUDGET)
    assert planned["micro_batch"] < 8
    assert planned["micro_batch"] * planned["gradient_accumulation_steps"] == 8
    assert planned["estimated_peak_mib"] * 2**20 <= BUDGET
    small = plan_batches(SMOLLM2, every_token, 8, 1, Lengths.of([(128, 30, 90)] * 8), BUDGET)
    assert (small["micro_batch"], small["gradient_accumulation_steps"]) == (8, 1)


def test_checkpointing_is_left_off_when_the_whole_batch_fits_without_it():
    budget = 10 * GiB  # a 16 GiB machine
    # The student prompt: rows of ~100-260 tokens train unsplit and without recomputation.
    short = plan_batches(SMOLLM2, PLAN, 8, 1, demo_rows(prompt=30), budget)
    assert (short["gradient_checkpointing"], short["micro_batch"]) == (False, 8)
    # The teacher's ~600-token instructions: checkpointing comes back on rather than a split.
    long = plan_batches(SMOLLM2, PLAN, 8, 1, demo_rows(prompt=600), budget)
    assert (long["gradient_checkpointing"], long["micro_batch"]) == (True, 8)
    # Forced either way, the setting wins.
    forced = plan_batches(
        SMOLLM2, {**PLAN, "gradient_checkpointing": True}, 8, 1, demo_rows(30), BUDGET
    )
    assert forced["gradient_checkpointing"] is True


def test_logits_are_planned_where_labels_are():
    rows = Lengths.of([(200, 30, 170), (150, 40, 100), (100, 20, 50)])
    # A packed row: the examples end to end, logits exactly at their labels.
    assert rows.worst(2, packed=True, every_token=False) == (350, 70)
    # Padded: every row as long as the longest; logits at the union of labelled positions.
    assert rows.worst(2, packed=False, every_token=False) == (400, 2 * (200 - 50 + 1))
    # trl's loss scores every token.
    assert rows.worst(2, packed=True, every_token=True) == (350, 350)
    assert rows.worst(2, packed=False, every_token=True) == (400, 400)


def test_shape_reads_a_transformers_config():
    config = SimpleNamespace(
        hidden_size=64, intermediate_size=128, num_hidden_layers=2, vocab_size=100
    )
    assert Shape.of(config, 1000) == Shape(1000, 64, 128, 2, 100)


def test_an_explicit_budget_wins_and_the_default_is_a_share_of_free_memory():
    assert memory_budget(512) == 512 * 2**20
    assert memory_budget(None) > 0
