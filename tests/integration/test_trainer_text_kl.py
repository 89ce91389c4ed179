"""`text_loss: kl` (safe_trainer.replay_kl_loss): plain-text replay rows learned as the KL
divergence from the base's own next-token distribution. Real tiny model under a real LoRA."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from tests.fixtures.datasets import triage_rows
from trainer.data import IGNORE_INDEX, encode_rows, is_text_row
from trainer.ml import Hyperparameters, RecipeOptions, lora_config
from trainer.plan import resolve
from trainer.safe_trainer import assistant_loss, replay_kl_loss

pytestmark = pytest.mark.slow
TEXTS = [{"text": "The quiet teapot sat on the shelf for years."}, {"text": "Every owl knows"}]


def batch(tokenizer, rows) -> dict[str, torch.Tensor]:
    """Right-padded, as the SFT collator pads."""
    examples = encode_rows(tokenizer, rows, max_len=256).examples
    width = max(len(e.input_ids) for e in examples)
    ids = [e.input_ids + [tokenizer.pad_token_id] * (width - len(e.input_ids)) for e in examples]
    labels = [e.labels + [IGNORE_INDEX] * (width - len(e.labels)) for e in examples]
    mask = [[1] * len(e.input_ids) + [0] * (width - len(e.input_ids)) for e in examples]
    return {
        "input_ids": torch.tensor(ids),
        "attention_mask": torch.tensor(mask),
        "labels": torch.tensor(labels),
    }


@pytest.fixture
def peft_model(tiny_model_dir: Path):
    from peft import get_peft_model
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(str(tiny_model_dir))
    tokenizer.pad_token = tokenizer.pad_token or tokenizer.eos_token
    torch.manual_seed(0)
    base = AutoModelForCausalLM.from_pretrained(str(tiny_model_dir), use_safetensors=True)
    hp = Hyperparameters(rank=4, alpha=8, learning_rate=1e-3, epochs=1)
    return get_peft_model(base, lora_config(hp, 0.0)).train(), tokenizer


def test_text_rows_are_told_from_chat_rows_by_their_labels(peft_model):
    _, tokenizer = peft_model
    mixed = batch(tokenizer, [*triage_rows(2), *TEXTS])
    assert is_text_row(mixed["labels"]).tolist() == [False, False, True, True]


def test_the_kl_is_zero_with_no_gradient_while_the_student_is_the_base(peft_model):
    model, tokenizer = peft_model
    inputs = batch(tokenizer, TEXTS)
    loss, _ = replay_kl_loss(model, inputs)
    loss.backward()
    assert abs(loss.item()) < 1e-5
    grads = [p.grad for p in model.parameters() if p.requires_grad and p.grad is not None]
    assert grads and max(g.abs().max().item() for g in grads) < 1e-5
    # The sampled-target loss on the same rows is far from zero: what the KL replaces.
    assert assistant_loss(model, inputs)[0].item() > 1.0


def test_a_drifted_student_pays_kl_on_text_and_cross_entropy_on_chat_rows(peft_model):
    model, tokenizer = peft_model
    with torch.no_grad():  # move the adapter away from the base
        for name, p in model.named_parameters():
            if "lora_B" in name:
                p.normal_(0, 0.5)
    chat, text = batch(tokenizer, triage_rows(2)), batch(tokenizer, TEXTS)
    kl_only, _ = replay_kl_loss(model, text)
    assert kl_only.item() > 1e-3
    # Mixed rows: the chat rows' cross-entropy and the text rows' KL, summed over every
    # labelled position and divided once by all of them.
    mixed = batch(tokenizer, [*triage_rows(2), *TEXTS])
    n_chat = (chat["labels"][:, 1:] != IGNORE_INDEX).sum()
    n_text = (text["labels"][:, 1:] != IGNORE_INDEX).sum()
    ce_chat, _ = assistant_loss(model, chat)
    expected = (ce_chat * n_chat + kl_only * n_text) / (n_chat + n_text)
    got, _ = replay_kl_loss(model, mixed)
    assert got.item() == pytest.approx(expected.item(), rel=1e-4)


def test_kl_takes_the_padded_plain_loss_path_and_refuses_packing():
    hw = {"device": "cuda", "cuda_bf16": True, "cpu_bf16": False, "bitsandbytes": False}
    hw["flash_attention"] = True
    plan = resolve(RecipeOptions(max_seq_len=64, batch_size=2, text_loss="kl"), hw)
    assert (plan["batching"], plan["plain_loss"], plan["text_loss"]) == ("grouped", True, "kl")
    assert resolve(RecipeOptions(max_seq_len=64, batch_size=2), hw)["batching"] == "padding_free"
    with pytest.raises(ValueError, match="padded batches"):
        resolve(RecipeOptions(max_seq_len=64, batch_size=2, text_loss="kl", loss="fused"), hw)
