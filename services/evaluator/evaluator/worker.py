"""Worker-process entry: `run.process("evaluator.worker:evaluate", EvalPayload, EvalResult)`.

The parent has already fetched and sha-verified every model directory; this process only
loads and runs them, one after another, and answers with raw outputs (scoring is the parent's,
in pure code). Progress goes out after every batch. The contract is contract.py.
"""

from __future__ import annotations

import gc
import time
from collections.abc import Callable
from typing import Any

from . import ml
from .contract import EvalPayload, EvalResult, LocalOutputs, ModelToRun


def evaluate(payload: EvalPayload, progress: Callable[[dict[str, Any]], None]) -> EvalResult:
    import torch

    torch.manual_seed(0)
    device = ml.pick_device(payload.device)
    results = {}
    for entry in payload.models:
        model, tokenizer = ml.load(entry.model_dir, entry.adapter_dir, device, payload.precision)
        results[entry.key] = _run_one(entry, model, tokenizer, payload, progress, device)
        del model
        gc.collect()
        if device == "cuda":
            torch.cuda.empty_cache()
    return EvalResult(results=results)


def _run_one(
    entry: ModelToRun,
    model: Any,
    tokenizer: Any,
    payload: EvalPayload,
    progress: Callable[[dict[str, Any]], None],
    device: str,
) -> LocalOutputs:
    key = entry.key
    golden = payload.golden
    prompts = ml.chat_prompts(tokenizer, payload.instructions, [r.input for r in golden])

    def on_batch(done: int, total: int) -> None:
        progress({"model": key, "stage": "golden", "done": done, "total": total})

    began = time.perf_counter()
    replies = ml.generate_batched(
        model,
        tokenizer,
        prompts,
        batch_size=payload.batch_size,
        max_new_tokens=payload.max_new_tokens,
        on_batch=on_batch,
    )
    compute_s = time.perf_counter() - began
    singles = ml.generate_single(
        model,
        tokenizer,
        prompts[: payload.latency_samples],
        max_new_tokens=payload.max_new_tokens,
    )
    progress({"model": key, "stage": "latency", "done": len(singles), "total": len(singles)})
    probe_replies = []
    if payload.probes:
        # General capability is measured as a user would meet it: no task system prompt.
        probe_prompts = ml.chat_prompts(tokenizer, None, [p.prompt for p in payload.probes])
        probe_replies = ml.generate_batched(
            model,
            tokenizer,
            probe_prompts,
            batch_size=payload.batch_size,
            max_new_tokens=payload.max_new_tokens,
        )
        progress({"model": key, "stage": "probes", "done": len(probe_replies)})
    ppl = None
    if payload.general_text and payload.perplexity_max_tokens:
        ppl = ml.perplexity(
            model,
            tokenizer,
            payload.general_text,
            window=payload.window,
            max_tokens=payload.perplexity_max_tokens,
        )
        progress({"model": key, "stage": "perplexity", "value": ppl})
    return LocalOutputs(
        replies={r.id: g.text for r, g in zip(golden, replies, strict=True)},
        latency_ms_amortised=[g.latency_ms for g in replies],
        latency_ms_single=[g.latency_ms for g in singles],
        compute_s_per_example=compute_s / max(1, len(golden)),
        probe_replies={p.id: g.text for p, g in zip(payload.probes, probe_replies, strict=True)},
        perplexity=ppl,
        device=device,
        batch_size=payload.batch_size,
    )
