"""vLLM-native variants with llm-compressor (compressed-tensors): recipes and calibration data.

They need CUDA; without it each is reported "skipped: needs a GPU", never a stand-in file.
llmcompressor is imported only inside `compress`, so the recipes and the calibration set are
built and tested on any machine; it is in the `gpu` extra, not the default install.
"""

from __future__ import annotations

import json
import random
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

# Weights only: the head stays in full precision, as llm-compressor's own examples do.
IGNORE = ("lm_head",)
GPTQ_SCHEMES = {"W8A16", "W4A16"}
DATA_FREE_SCHEMES = {"FP8_DYNAMIC"}


@dataclass(frozen=True)
class Recipe:
    """What `llmcompressor.oneshot` gets: one modifier, its arguments, and whether it needs
    calibration rows (GPTQ does, dynamic FP8 does not)."""

    modifier: str
    arguments: dict[str, Any]
    needs_calibration: bool

    def build(self) -> Any:
        from llmcompressor.modifiers.quantization import GPTQModifier, QuantizationModifier

        cls = {"GPTQModifier": GPTQModifier, "QuantizationModifier": QuantizationModifier}
        return cls[self.modifier](**self.arguments)


def recipe(scheme: str) -> Recipe:
    args = {"targets": "Linear", "scheme": scheme, "ignore": list(IGNORE)}
    if scheme in GPTQ_SCHEMES:
        return Recipe("GPTQModifier", args, needs_calibration=True)
    if scheme in DATA_FREE_SCHEMES:
        return Recipe("QuantizationModifier", args, needs_calibration=False)
    raise ValueError(f"no llm-compressor recipe for scheme {scheme!r}")


def calibration_texts(
    train_jsonl: bytes, system_prompt: str, tokenizer: Any, *, rows: int, seed: int = 0
) -> list[str]:
    """A seeded sample of the task's training rows, rendered as the student sees them (its
    chat template and system prompt, with the answer): GPTQ calibrates on the task's own
    activations, not on generic text."""
    examples = [json.loads(line) for line in train_jsonl.decode().splitlines() if line.strip()]
    if not examples:
        raise ValueError("no training rows to calibrate on")
    # A reproducible sample, not a secret.
    picked = random.Random(seed).sample(examples, min(rows, len(examples)))  # noqa: S311
    return [
        tokenizer.apply_chat_template(_messages(ex, system_prompt), tokenize=False) for ex in picked
    ]


def _messages(example: dict[str, Any], system_prompt: str) -> list[dict[str, str]]:
    # Curated rows are chat messages already, system prompt included: exactly what was trained.
    messages = example.get("messages")
    if isinstance(messages, list) and messages:
        return messages
    if isinstance(example.get("input"), str) and isinstance(example.get("output"), str):
        return [
            {"role": "system", "content": system_prompt},
            {"role": "user", "content": example["input"]},
            {"role": "assistant", "content": example["output"]},
        ]
    raise ValueError("training row has neither 'messages' nor 'input' and 'output'")


def cuda_available() -> bool:
    try:
        import torch
    except ImportError:
        return False
    return bool(torch.cuda.is_available())


def skip_reason() -> str | None:
    """Why vLLM-native variants cannot be made here, or None."""
    if not cuda_available():
        return "skipped: needs a GPU (CUDA); llm-compressor and vLLM are GPU-only here"
    try:
        import llmcompressor  # noqa: F401
    except ImportError:
        return "skipped: llmcompressor is not installed (pip install '.[gpu]')"
    return None


def compress(merged: Path, dest: Path, scheme: str, texts: Sequence[str], max_len: int) -> Path:
    """Run llm-compressor's oneshot on the merged model; saves compressed-tensors to `dest`."""
    from datasets import Dataset
    from llmcompressor import oneshot
    from transformers import AutoModelForCausalLM, AutoTokenizer

    chosen = recipe(scheme)
    tokenizer = AutoTokenizer.from_pretrained(str(merged))
    model = AutoModelForCausalLM.from_pretrained(str(merged), torch_dtype="auto")
    kwargs: dict[str, Any] = {}
    if chosen.needs_calibration:
        data = Dataset.from_dict({"text": list(texts)}).map(
            lambda r: tokenizer(
                r["text"], truncation=True, max_length=max_len, add_special_tokens=False
            ),
            remove_columns=["text"],
        )
        kwargs = {"dataset": data, "max_seq_length": max_len, "num_calibration_samples": len(texts)}
    oneshot(model=model, recipe=chosen.build(), **kwargs)
    model.save_pretrained(str(dest), save_compressed=True)
    tokenizer.save_pretrained(str(dest))
    del model
    import torch

    torch.cuda.empty_cache()  # the vLLM engine that serves it next needs the memory
    return dest
