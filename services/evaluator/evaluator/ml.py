"""The recipe: load a model (optionally with a LoRA adapter), generate greedily in batches, and
score perplexity. torch / transformers / peft / xgrammar are imported inside functions, so
importing this module costs nothing; it runs in the worker process and in bench/eval.py.

Every path takes an optional compiled grammar (shared.models.decoding): with one, the reply is
decoded under the task's output schema and ends at the stop token after the object.

Latency comes three ways, and the report names which it uses:
- amortised: a batch's wall time divided by its size (what a batch of traffic costs per item;
  the basis of the compute-cost figure);
- single: one example generated alone (what one caller waits when the server is idle);
- concurrent: C examples generated together, each charged the whole batch's wall time (what
  each of C callers arriving at once waits on a server that batches them).
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from shared.bus import PermanentError
from shared.models import decoding
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


def dtype_name(model: Any) -> str:
    """The precision a loaded model computes in, as the results record it."""
    names = {"torch.bfloat16": "bf16", "torch.float32": "fp32", "torch.float16": "fp16"}
    return names.get(str(model.dtype), str(model.dtype))


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


def prompt_tokens(tokenizer: Any, prompts: Sequence[str]) -> list[int]:
    return [len(ids) for ids in _encode(tokenizer, prompts)]


def _encode(tokenizer: Any, prompts: Sequence[str]) -> list[list[int]]:
    return tokenizer(list(prompts), add_special_tokens=False)["input_ids"]


def grammar_for(model: Any, tokenizer: Any, schema: dict[str, Any] | None) -> Any | None:
    """The schema compiled for this model's tokenizer; None (free decoding) without a schema."""
    if schema is None:
        return None
    info = decoding.tokenizer_info(tokenizer, model.config.vocab_size)
    return decoding.compile_grammar(schema, info)


@dataclass(frozen=True)
class Prefix:
    """The key/value cache of the token prefix every prompt shares (the chat template and the
    system prompt), computed once and copied into each batch instead of recomputed per row."""

    length: int
    cache: Any

    def for_batch(self, rows: int) -> Any:
        import copy

        cache = copy.deepcopy(self.cache)
        cache.batch_repeat_interleave(rows)
        return cache


def shared_prefix(model: Any, rows: Sequence[Sequence[int]]) -> Prefix | None:
    import torch

    length = 0  # every row keeps at least one token of its own to feed generate
    while all(len(r) > length + 1 and r[length] == rows[0][length] for r in rows):
        length += 1
    if length == 0:
        return None
    ids = torch.tensor([list(rows[0][:length])], device=model.device)
    with torch.inference_mode():
        return Prefix(length, model(input_ids=ids, use_cache=True).past_key_values)


def _generate(
    model: Any,
    tokenizer: Any,
    rows: Sequence[Sequence[int]],
    max_new_tokens: int,
    grammar: Any = None,
    prefix: Prefix | None = None,
) -> list[str]:
    """Greedy replies to tokenized prompts, left-padded; with a prefix, the padding goes
    between the shared prefix (already in the cache) and each row's own tokens. Positions
    come from the attention mask, so every row's tokens keep the positions they have alone."""
    import torch

    kwargs: dict[str, Any] = {}
    if grammar is not None:
        kwargs["logits_processor"] = [decoding.GrammarLogitsProcessor(grammar, len(rows))]
        # Stop exactly where the grammar does, whatever the model's generation config says.
        kwargs["eos_token_id"] = decoding.stop_token_ids(grammar)
    skip = 0
    if prefix is not None:
        skip = prefix.length
        kwargs["past_key_values"] = prefix.for_batch(len(rows))
    width = max(len(r) for r in rows) - skip
    pad = tokenizer.pad_token_id
    ids = [[*r[:skip], *[pad] * (width + skip - len(r)), *r[skip:]] for r in rows]
    mask = [[1] * skip + [0] * (width + skip - len(r)) + [1] * (len(r) - skip) for r in rows]
    with torch.inference_mode():
        out = model.generate(
            input_ids=torch.tensor(ids, device=model.device),
            attention_mask=torch.tensor(mask, device=model.device),
            max_new_tokens=max_new_tokens,
            do_sample=False,
            pad_token_id=pad,
            **kwargs,
        )
    return tokenizer.batch_decode(out[:, len(ids[0]) :], skip_special_tokens=True)


def _sync(model: Any) -> None:
    import torch

    if model.device.type == "cuda":
        torch.cuda.synchronize()


def _timed(
    model: Any,
    tokenizer: Any,
    rows: Sequence[Sequence[int]],
    max_new_tokens: int,
    grammar: Any,
    prefix: Prefix | None = None,
) -> tuple[list[str], float]:
    began = time.perf_counter()
    texts = _generate(model, tokenizer, rows, max_new_tokens, grammar, prefix)
    _sync(model)
    return texts, (time.perf_counter() - began) * 1000


def generate_batched(
    model: Any,
    tokenizer: Any,
    prompts: Sequence[str],
    *,
    batch_size: int,
    max_new_tokens: int,
    grammar: Any = None,
    on_batch: Callable[[int, int], None] | None = None,
) -> list[Generation]:
    """Greedy replies in input order; latency per example is the batch's time / its size,
    plus its share of the prefix.

    Length bucketing: prompts are batched in order of token count, so neighbours pad little
    and prefill is not spent on padding. The prefix all prompts share is computed once
    (`shared_prefix`). Results are put back in input order.
    """
    rows = _encode(tokenizer, prompts)
    began = time.perf_counter()
    prefix = shared_prefix(model, rows)
    _sync(model)
    prefix_ms = (time.perf_counter() - began) * 1000 / max(1, len(rows))
    order = sorted(range(len(rows)), key=lambda i: len(rows[i]))
    results: dict[int, Generation] = {}
    for start in range(0, len(order), batch_size):
        index = order[start : start + batch_size]
        batch = [rows[i] for i in index]
        texts, ms = _timed(model, tokenizer, batch, max_new_tokens, grammar, prefix)
        for i, text in zip(index, texts, strict=True):
            results[i] = Generation(text, ms / len(index) + prefix_ms)
        if on_batch is not None:
            on_batch(len(results), len(prompts))
    return [results[i] for i in range(len(prompts))]


def generate_single(
    model: Any, tokenizer: Any, prompts: Sequence[str], *, max_new_tokens: int, grammar: Any = None
) -> list[Generation]:
    """One prompt per generate call: the latency a lone request sees. Nothing is shared
    between requests (no prefix cache), as `transformers serve` runs them."""
    out = []
    for row in _encode(tokenizer, prompts):
        [text], ms = _timed(model, tokenizer, [row], max_new_tokens, grammar)
        out.append(Generation(text, ms))
    return out


def generate_concurrent(
    model: Any,
    tokenizer: Any,
    prompts: Sequence[str],
    *,
    concurrency: int,
    max_new_tokens: int,
    grammar: Any = None,
) -> list[Generation]:
    """C requests arriving together, served as one batch: each waits the batch's wall time.

    Groups are taken in the order given, not sorted by length: concurrent callers do not
    arrive sorted, and a short request batched with a long one waits for it.
    """
    rows = _encode(tokenizer, prompts)
    out = []
    for start in range(0, len(rows), concurrency):
        texts, ms = _timed(
            model, tokenizer, rows[start : start + concurrency], max_new_tokens, grammar
        )
        out.extend(Generation(text, ms) for text in texts)
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
