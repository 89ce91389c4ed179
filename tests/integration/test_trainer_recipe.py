"""The recipe on the tiny random llama, in process: it learns, only from assistant tokens, and
its adapter is plain safetensors that peft loads back onto the base."""

from __future__ import annotations

import json

import pytest
import torch
from peft import PeftModel
from safetensors.torch import load_file
from transformers import AutoModelForCausalLM, AutoTokenizer

from tests.fixtures.datasets import triage_rows
from trainer.data import IGNORE_INDEX
from trainer.ml import Hyperparameters, LoraSFTRecipe, RecipeOptions


@pytest.fixture(scope="module")
def trained(tiny_model_dir, tmp_path_factory):
    rows = triage_rows(32, seed=3)
    options = RecipeOptions(max_seq_len=128, batch_size=4, save_steps=1000, evaluations=2)
    hp = Hyperparameters(rank=8, alpha=16, learning_rate=1e-2, epochs=3)
    work = tmp_path_factory.mktemp("recipe")
    messages: list[dict] = []
    recipe = LoraSFTRecipe(
        tiny_model_dir, rows[:24], rows[24:], options, hp, work / "trial-0", emit=messages.append
    )
    recipe.setup()
    outcome = recipe.train()
    adapter = recipe.save(work / "adapter")
    yield recipe, outcome, adapter, messages
    recipe.cleanup()


def test_training_lowers_the_loss(trained):
    _, outcome, _, messages = trained
    losses = [loss for _, loss in outcome.train_losses]
    assert outcome.steps == outcome.total_steps == 18
    assert sum(losses[-3:]) / 3 < sum(losses[:3]) / 3 - 0.5
    assert outcome.validation_loss < outcome.eval_losses[0][1]
    steps = [m for m in messages if m["kind"] == "step"]
    assert [m["step"] for m in steps] == list(range(1, 19))
    assert all(m["tokens_per_second"] > 0 for m in steps)


def test_the_batches_carry_loss_on_assistant_tokens_only(trained, tiny_model_dir):
    recipe, _, _, _ = trained
    tokenizer = AutoTokenizer.from_pretrained(str(tiny_model_dir))
    dataset = recipe.trainer.train_dataset
    batch = recipe.trainer.data_collator([dataset[i] for i in range(4)])
    for i in range(4):
        learned = [t for t in batch["labels"][i].tolist() if t != IGNORE_INDEX]
        text = tokenizer.decode(learned)
        assert text.endswith(tokenizer.eos_token)
        answer = json.loads(text.removesuffix(tokenizer.eos_token))
        assert set(answer) == {"category", "priority"}


def test_the_adapter_is_safetensors_that_moved_from_init_and_loads_onto_the_base(
    trained, tiny_model_dir
):
    recipe, _, adapter, _ = trained
    assert sorted(p.name for p in adapter.iterdir()) == [
        "adapter_config.json",
        "adapter_model.safetensors",
    ]
    weights = load_file(str(adapter / "adapter_model.safetensors"))
    lora_b = [w for name, w in weights.items() if "lora_B" in name]
    assert lora_b and all(w.abs().sum() > 0 for w in lora_b), "lora_B starts at zero"

    # The same dtype the recipe trained in (bf16 on CPUs with AMX/AVX512-BF16, else fp32).
    dtype = torch.bfloat16 if recipe.plan["precision"] == "bf16" else torch.float32
    base = AutoModelForCausalLM.from_pretrained(str(tiny_model_dir), dtype=dtype)
    ids = torch.tensor([[1, 9690, 198, 68, 5319, 30, 2, 198]])
    with torch.no_grad():
        base_logits = base(ids).logits
        loaded = PeftModel.from_pretrained(base, str(adapter)).eval()
        loaded_logits = loaded(ids).logits
        trained_logits = recipe.trainer.model.eval()(input_ids=ids).logits
    assert not torch.allclose(base_logits, loaded_logits)
    tolerance = 1e-5 if dtype == torch.float32 else 2e-2
    assert torch.allclose(loaded_logits.float(), trained_logits.float(), atol=tolerance)
