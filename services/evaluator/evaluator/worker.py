"""Worker-process entry: `run.process("evaluator.worker:evaluate", EvalPayload, EvalResult)`.

The parent has already fetched and sha-verified every model directory; this process only
loads and runs them, one after another, and answers with raw outputs (scoring is the parent's,
in pure code). Progress goes out after every batch. The contract is contract.py.

Per model: the golden set batched (the replies that are scored, and the amortised cost), then
the latency rows one at a time (single-stream) and in groups of `latency_concurrency`
(concurrent), all under the same decoding (the schema's grammar when the payload carries one),
then the probes (free decoding, no system prompt) and perplexity.
"""

from __future__ import annotations

import gc
import time
from collections.abc import Callable
from statistics import fmean
from typing import Any

from . import ml
from .contract import (
    EvalPayload,
    EvalResult,
    Latency,
    LatencySummary,
    LocalOutputs,
    ModelToRun,
    PromptTokens,
)
from .metrics import percentile


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


def latency_rows(count: int, cap: int | None) -> list[int]:
    """Which golden rows are timed: all, or `cap` of them spread evenly over the set (the set
    is ordered by the way it was written; its first rows need not be typical)."""
    if cap is None or cap >= count:
        return list(range(count))
    return [i * count // cap for i in range(cap)]


def _summary(values: list[float]) -> LatencySummary:
    return LatencySummary(
        n=len(values), p50_ms=percentile(values, 50), p95_ms=percentile(values, 95)
    )


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
    prompts = ml.chat_prompts(tokenizer, entry.system_prompt, [r.input for r in golden])
    tokens = ml.prompt_tokens(tokenizer, prompts)
    grammar = ml.grammar_for(model, tokenizer, payload.output_schema)
    gen = {"max_new_tokens": payload.max_new_tokens, "grammar": grammar}

    def on_batch(done: int, total: int) -> None:
        progress({"model": key, "stage": "golden", "done": done, "total": total})

    began = time.perf_counter()
    replies = ml.generate_batched(
        model, tokenizer, prompts, batch_size=payload.batch_size, on_batch=on_batch, **gen
    )
    compute_s = time.perf_counter() - began
    timed = [prompts[i] for i in latency_rows(len(prompts), payload.latency_samples)]
    singles = ml.generate_single(model, tokenizer, timed, **gen)
    progress({"model": key, "stage": "latency single", "done": len(singles)})
    concurrent = ml.generate_concurrent(
        model, tokenizer, timed, concurrency=payload.latency_concurrency, **gen
    )
    progress({"model": key, "stage": "latency concurrent", "done": len(concurrent)})
    probe_replies = []
    if payload.probes:
        # General capability is measured as a user would meet it: no task system prompt, and
        # no task schema.
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
    single_ms = [g.latency_ms for g in singles]
    concurrent_ms = [g.latency_ms for g in concurrent]
    return LocalOutputs(
        replies={r.id: g.text for r, g in zip(golden, replies, strict=True)},
        latency_ms_amortised=[g.latency_ms for g in replies],
        latency_ms_single=single_ms,
        latency_ms_concurrent=concurrent_ms,
        latency=Latency(
            single=_summary(single_ms),
            concurrent=_summary(concurrent_ms),
            concurrency=payload.latency_concurrency,
        ),
        prompt=entry.prompt,
        prompt_tokens=tokens,
        prompt_tokens_summary=PromptTokens(
            mean=fmean(tokens) if tokens else 0.0, max=max(tokens, default=0)
        ),
        decoding="free" if grammar is None else "json_schema",
        compute_s_per_example=compute_s / max(1, len(golden)),
        probe_replies={p.id: g.text for p, g in zip(payload.probes, probe_replies, strict=True)},
        perplexity=ppl,
        device=device,
        dtype=ml.dtype_name(model),
        batch_size=payload.batch_size,
    )
