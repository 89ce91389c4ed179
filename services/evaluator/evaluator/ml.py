"""The recipe: load a model (optionally with a LoRA adapter), generate greedily in batches, and
score perplexity. torch / transformers / peft are imported inside functions, so importing this
module costs nothing; it runs in the worker process and in bench/eval.py.

Latency comes two ways, and the report names which it uses:
- amortised: a batch's wall time divided by its size (what a batch of traffic costs per item;
  the basis of the compute-cost figure);
- single: one example generated alone (what one caller waits; the basis of the P95 gate).
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from shared.bus import PermanentError
from shared.models.hardware import cpu_has_bf16


@dataclass(frozen=True)
class Generation:
    text: str
    latency_ms: float


def pick_device(requested: str = "auto") -> str:
    import torch

    if requested == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    return requested


def model_dtype(device: str, precision: str = "auto") -> Any:
    """bf16 on CUDA and on CPUs with bf16 matrix units (AMX, AVX512-BF16), else fp32.

    Candidate and base are always loaded alike, so the comparison between them is fair.
    """
    import torch

    if precision == "auto":
        precision = "bf16" if device == "cuda" or cpu_has_bf16() else "fp32"
    return torch.bfloat16 if precision == "bf16" else torch.float32


def load(
    model_dir: Path, adapter_dir: Path | None = None, device: str = "cpu", precision: str = "auto"
) -> tuple[Any, Any]:
    """Model and tokenizer from safetensors only; an adapter is applied with peft, not merged."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    dtype = model_dtype(device, precision)
    try:
        tokenizer = AutoTokenizer.from_pretrained(str(model_dir))
        model = AutoModelForCausalLM.from_pretrained(
            str(model_dir), use_safetensors=True, dtype=dtype, trust_remote_code=False
        )
        if adapter_dir is not None:
            from peft import PeftModel

            model = PeftModel.from_pretrained(model, str(adapter_dir), is_trainable=False)
    except (OSError, ValueError, ImportError, KeyError) as exc:
        # The files were sha-verified before we got here: a load failure is the model itself.
        raise PermanentError(f"cannot load model {model_dir.name}: {exc}") from exc
    if getattr(model, "hf_quantizer", None) is None:
        # Quantized weights are placed by their quantizer at load; moving them is refused.
        model.to(device)
    model.eval()
    tokenizer.padding_side = "left"
    if tokenizer.pad_token_id is None:
        tokenizer.pad_token = tokenizer.eos_token
    return model, tokenizer


def chat_prompts(tokenizer: Any, system: str | None, inputs: Sequence[str]) -> list[str]:
    prompts = []
    for text in inputs:
        messages = [{"role": "user", "content": text}]
        if system:
            messages.insert(0, {"role": "system", "content": system})
        prompts.append(
            tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
        )
    return prompts


def _generate(model: Any, tokenizer: Any, prompts: Sequence[str], max_new_tokens: int) -> list[str]:
    import torch

    batch = tokenizer(list(prompts), return_tensors="pt", padding=True, add_special_tokens=False)
    batch = {k: v.to(model.device) for k, v in batch.items()}
    with torch.inference_mode():
        out = model.generate(
            **batch,
            max_new_tokens=max_new_tokens,
            do_sample=False,
            pad_token_id=tokenizer.pad_token_id,
        )
    new = out[:, batch["input_ids"].shape[1] :]
    return tokenizer.batch_decode(new, skip_special_tokens=True)


def _sync(model: Any) -> None:
    import torch

    if model.device.type == "cuda":
        torch.cuda.synchronize()


def generate_batched(
    model: Any,
    tokenizer: Any,
    prompts: Sequence[str],
    *,
    batch_size: int,
    max_new_tokens: int,
    on_batch: Callable[[int, int], None] | None = None,
) -> list[Generation]:
    """Greedy replies in input order; latency per example is the batch's time / its size.

    Prompts are batched in order of length so a batch pads little; results are put back.
    """
    order = sorted(range(len(prompts)), key=lambda i: len(prompts[i]))
    results: dict[int, Generation] = {}
    for start in range(0, len(order), batch_size):
        index = order[start : start + batch_size]
        began = time.perf_counter()
        texts = _generate(model, tokenizer, [prompts[i] for i in index], max_new_tokens)
        _sync(model)
        per_item_ms = (time.perf_counter() - began) * 1000 / len(index)
        for i, text in zip(index, texts, strict=True):
            results[i] = Generation(text, per_item_ms)
        if on_batch is not None:
            on_batch(len(results), len(prompts))
    return [results[i] for i in range(len(prompts))]


def generate_single(
    model: Any, tokenizer: Any, prompts: Sequence[str], *, max_new_tokens: int
) -> list[Generation]:
    """One prompt per generate call: the latency a lone request sees."""
    out = []
    for prompt in prompts:
        began = time.perf_counter()
        [text] = _generate(model, tokenizer, [prompt], max_new_tokens)
        _sync(model)
        out.append(Generation(text, (time.perf_counter() - began) * 1000))
    return out


def perplexity(model: Any, tokenizer: Any, text: str, *, window: int, max_tokens: int) -> float:
    """exp(mean token cross-entropy) over non-overlapping windows of the text."""
    import torch

    ids = tokenizer(text, add_special_tokens=False)["input_ids"][:max_tokens]
    total_nll, total_tokens = 0.0, 0
    with torch.inference_mode():
        for start in range(0, len(ids), window):
            chunk = ids[start : start + window]
            if len(chunk) < 2:
                break
            tensor = torch.tensor([chunk], device=model.device)
            loss = model(input_ids=tensor, labels=tensor).loss.float().item()
            total_nll += loss * (len(chunk) - 1)
            total_tokens += len(chunk) - 1
    if not total_tokens:
        raise PermanentError("general text is too short to score perplexity")
    return math.exp(total_nll / total_tokens)
