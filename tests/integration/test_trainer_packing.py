"""No leakage between the examples of a batch, packed or grouped, through the recipe's own
collator and loss: every example scores exactly as it does alone (tiny random llama, fp32),
and the loss is taken on assistant tokens only."""

from __future__ import annotations

import json

import pytest
import torch

from tests.fixtures.datasets import triage_rows
from trainer.data import IGNORE_INDEX, grouped_order
from trainer.ml import Hyperparameters, LoraSFTRecipe, RecipeOptions
from trainer.safe_trainer import assistant_loss

ATOL = 1e-5


def recipe_for(model_dir, tmp_path, batching: str, steps: int = 1) -> LoraSFTRecipe:
    # Ticket lengths differ, so a packed row has boundaries and a padded batch has padding.
    rows = triage_rows(12, seed=5)
    options = RecipeOptions(
        max_seq_len=256,
        batch_size=4,
        precision="fp32",
        batching=batching,
        save_steps=1000,
        max_steps=steps,
    )
    hp = Hyperparameters(rank=4, alpha=8, learning_rate=5e-2, epochs=1)
    recipe = LoraSFTRecipe(model_dir, rows, [], options, hp, tmp_path / batching)
    recipe.setup()
    return recipe


@pytest.fixture(scope="module", params=["padding_free", "grouped"])
def trained(request, tiny_model_dir, tmp_path_factory):
    """A recipe trained a few steps, so the LoRA weights are no longer the identity."""
    recipe = recipe_for(tiny_model_dir, tmp_path_factory.mktemp("pack"), request.param, 3)
    recipe.train()
    yield recipe
    recipe.cleanup()


def alone(model, example) -> tuple[torch.Tensor, torch.Tensor, int]:
    """(logits, summed loss, labelled tokens) of one example in a batch of its own."""
    ids = torch.tensor([example["input_ids"]])
    labels = torch.tensor([example["labels"]])
    logits = model(input_ids=ids, use_cache=False).logits[0]
    loss = torch.nn.functional.cross_entropy(
        logits[:-1], labels[0, 1:], ignore_index=IGNORE_INDEX, reduction="sum"
    )
    return logits, loss, int((labels[0, 1:] != IGNORE_INDEX).sum())


def rows_of(batch, batching: str, sizes: list[int]) -> list[tuple[int, slice]]:
    """Where each example sits in the collated batch: (row, columns)."""
    if batching == "padding_free":
        starts = [sum(sizes[:i]) for i in range(len(sizes))]
        return [(0, slice(s, s + n)) for s, n in zip(starts, sizes, strict=True)]
    return [(i, slice(0, n)) for i, n in enumerate(sizes)]


@pytest.fixture
def cache_on(trained):
    """The model as loaded outside a Trainer (which sets use_cache=False): a KV cache would
    make transformers skip the packed mask, so the loss must not depend on the Trainer."""
    config = trained.trainer.model.config
    before, config.use_cache = config.use_cache, True
    yield trained
    config.use_cache = before


@pytest.mark.parametrize("mode", ["train", "eval"])
def test_each_example_in_the_batch_scores_exactly_as_alone(cache_on, mode):
    recipe = cache_on
    model = recipe.trainer.model
    model.train(mode == "train")
    dataset = recipe.trainer.train_dataset
    examples = [dataset[i] for i in range(4)]
    sizes = [len(e["input_ids"]) for e in examples]
    assert len(set(sizes)) > 1
    batch = recipe.trainer.data_collator(examples)
    if recipe.plan["batching"] == "padding_free":
        assert batch["input_ids"].shape == (1, sum(sizes)) and "attention_mask" not in batch
    else:
        assert batch["input_ids"].shape == (4, max(sizes))
    inputs = {k: v for k, v in batch.items() if k != "labels"}
    torch.manual_seed(0)  # dropout is off, but keep the comparison deterministic anyway
    with torch.no_grad():
        together = model(**inputs, use_cache=False).logits
        batch_loss, _ = assistant_loss(model, batch)
        each = [alone(model, e) for e in examples]
    places = rows_of(batch, recipe.plan["batching"], sizes)
    for (row, cols), (logits, _, _) in zip(places, each, strict=True):
        assert torch.allclose(together[row, cols], logits, atol=ATOL)
    # The batch loss is the mean over every labelled token of every example, as if alone.
    expected = sum(loss for _, loss, _ in each) / sum(n for _, _, n in each)
    assert torch.allclose(batch_loss, expected, atol=ATOL)


def test_a_packed_row_without_its_positions_would_leak(trained):
    """The control: the same row read as one sequence differs, so the test above can fail."""
    recipe = trained
    if recipe.plan["batching"] != "padding_free":
        pytest.skip("a padded batch has no positions to drop")
    dataset = recipe.trainer.train_dataset
    examples = [dataset[i] for i in range(2)]
    batch = recipe.trainer.data_collator(examples)
    with torch.no_grad():
        flat = recipe.trainer.model(input_ids=batch["input_ids"], use_cache=False).logits
        second, _, _ = alone(recipe.trainer.model, examples[1])
    assert not torch.allclose(flat[0, len(examples[0]["input_ids"]) :], second, atol=1e-3)


def test_only_assistant_tokens_carry_loss_and_none_crosses_a_boundary(trained, tiny_model_dir):
    from transformers import AutoTokenizer

    recipe = trained
    tokenizer = AutoTokenizer.from_pretrained(str(tiny_model_dir))
    dataset = recipe.trainer.train_dataset
    examples = [dataset[i] for i in range(4)]
    batch = recipe.trainer.data_collator(examples)
    sizes = [len(e["input_ids"]) for e in examples]
    for row, cols in rows_of(batch, recipe.plan["batching"], sizes):
        labels = batch["labels"][row, cols].tolist()
        assert labels[0] == IGNORE_INDEX  # the first token is never predicted from another row
        text = tokenizer.decode([t for t in labels if t != IGNORE_INDEX])
        assert text.endswith(tokenizer.eos_token)
        assert set(json.loads(text.removesuffix(tokenizer.eos_token))) == {"category", "priority"}
    if recipe.plan["batching"] == "grouped":
        padding = batch["attention_mask"] == 0
        assert (batch["labels"][padding] == IGNORE_INDEX).all()


def test_the_loss_is_the_models_own_cross_entropy(trained):
    """Logits at labelled positions only: the same loss as scoring every position."""
    recipe = trained
    batch = recipe.trainer.data_collator([recipe.trainer.train_dataset[i] for i in range(4)])
    with torch.no_grad():
        full = recipe.trainer.model(**batch, use_cache=False).loss
        ours, outputs = assistant_loss(recipe.trainer.model, batch)
    labelled = int((batch["labels"][:, 1:] != IGNORE_INDEX).any(dim=0).sum())
    assert outputs.logits.shape[1] == labelled < batch["input_ids"].shape[1]
    assert torch.allclose(ours, full, atol=ATOL)


def test_training_counts_every_real_token_and_no_padding(trained):
    recipe = trained
    dataset = recipe.trainer.train_dataset
    state = recipe.trainer.state
    seen = state.num_input_tokens_seen
    batch = recipe.trainer.data_collator([dataset[i] for i in range(4)])
    recipe.trainer._track_num_input_tokens(batch)
    assert state.num_input_tokens_seen - seen == sum(len(dataset[i]["input_ids"]) for i in range(4))


def test_grouped_training_batches_are_the_samplers_runs(trained):
    recipe = trained
    if recipe.plan["batching"] != "grouped":
        pytest.skip("packed rows have no padding to group away")
    dataset = recipe.trainer.train_dataset
    lengths = [len(ids) for ids in dataset["input_ids"]]
    order = grouped_order(lengths, recipe.plan["micro_batch"], recipe.options.seed)
    runs = [
        order[i : i + recipe.plan["micro_batch"]]
        for i in range(0, len(order), recipe.plan["micro_batch"])
    ]
    widths = [batch["input_ids"].shape[1] for batch in recipe.trainer.get_train_dataloader()]
    assert widths == [max(lengths[i] for i in run) for run in runs]
