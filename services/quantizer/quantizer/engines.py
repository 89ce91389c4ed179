"""Each variant on the engine that serves it, under the same structured decoding.

One greedy loop drives both engines: prefill the prompt, then one token at a time, each step's
logits masked by an xgrammar matcher compiled from the task's schema (shared.models.decoding),
so the only thing that differs between variants is the engine and its weights. Prompts are
rendered once by the merged model's tokenizer (its chat template and the student prompt) and
given to both engines as token ids: the GGUF carries the same template for the server.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from shared.models import decoding


class Engine(Protocol):
    def prefill(self, ids: Sequence[int]) -> Any: ...  # last position's logits (1-D)

    def step(self, token: int) -> Any: ...


@dataclass(frozen=True)
class Reply:
    text: str
    prompt_tokens: int
    new_tokens: int
    ttft_s: float
    total_s: float
    cpu_s: float


class TransformersEngine:
    def __init__(self, model_dir: Path, threads: int) -> None:
        import torch
        from transformers import AutoModelForCausalLM

        torch.set_num_threads(threads)
        self._torch = torch
        self.model = AutoModelForCausalLM.from_pretrained(str(model_dir), torch_dtype=torch.float32)
        self.model.eval()
        self.vocab_size = self.model.config.vocab_size
        self._past = None

    def _run(self, ids: Sequence[int]) -> Any:
        with self._torch.no_grad():
            out = self.model(
                input_ids=self._torch.tensor([list(ids)]),
                past_key_values=self._past,
                use_cache=True,
            )
        self._past = out.past_key_values
        return out.logits[0, -1].float()

    def prefill(self, ids: Sequence[int]) -> Any:
        self._past = None
        return self._run(ids)

    def step(self, token: int) -> Any:
        return self._run([token])


class LlamaCppEngine:
    def __init__(self, gguf: Path, threads: int, context: int) -> None:
        import llama_cpp

        # n_threads_batch (the prompt) defaults to every CPU, not n_threads: on a machine
        # whose other cores are busy, prompt processing then waits on threads it cannot run.
        self.llm = llama_cpp.Llama(
            model_path=str(gguf),
            n_ctx=context,
            n_threads=threads,
            n_threads_batch=threads,
            n_batch=512,
            verbose=False,
        )
        self.vocab_size = self.llm.n_vocab()

    def _last(self) -> Any:
        import numpy as np
        import torch

        # Read from the context: llama-cpp-python 0.3.36 fills `Llama.scores` only with
        # logits_all=True, which would project every prompt token onto the vocabulary. A copy:
        # masking the buffer llama.cpp hands over would be overwritten or do nothing.
        raw = np.ctypeslib.as_array(self.llm._ctx.get_logits_ith(-1), shape=(self.vocab_size,))
        return torch.from_numpy(np.array(raw, dtype=np.float32))

    def prefill(self, ids: Sequence[int]) -> Any:
        self.llm.reset()
        self.llm.eval(list(ids))
        return self._last()

    def step(self, token: int) -> Any:
        self.llm.eval([token])
        return self._last()


def runtime_info() -> dict[str, str]:
    """Which kernels each engine chose on this CPU (AVX2 / AVX-512 / AMX...): a figure from
    one machine means little without it."""
    import torch

    info = {
        "torch": torch.__version__,
        "torch_cpu_capability": torch.backends.cpu.get_cpu_capability(),
        "cuda": torch.cuda.get_device_name(0) if torch.cuda.is_available() else "none",
    }
    try:
        import llama_cpp
    except ImportError:  # an install without the CPU engine
        return info | {"llama_cpp": "not installed"}
    return info | {
        "llama_cpp": llama_cpp.__version__,
        "llama_cpp_system": llama_cpp.llama_print_system_info().decode().strip(),
    }


def greedy(
    engine: Engine,
    prompt_ids: Sequence[int],
    *,
    grammar: Any | None,
    stop_ids: set[int],
    max_new_tokens: int,
    decode: Any,
) -> Reply:
    """One reply, timed: wall time to the first token and in all, and this thread's CPU time."""
    import xgrammar as xgr

    matcher = xgr.GrammarMatcher(grammar) if grammar is not None else None
    vocab = grammar.tokenizer_info.vocab_size if grammar is not None else 0
    mask = xgr.allocate_token_bitmask(1, vocab) if matcher else None
    generated: list[int] = []
    cpu0, t0 = time.thread_time(), time.perf_counter()
    ttft = None
    logits = engine.prefill(prompt_ids)
    for _ in range(max_new_tokens):
        if matcher is not None:
            matcher.fill_next_token_bitmask(mask)
            xgr.apply_token_bitmask_inplace(logits[None], mask, vocab_size=vocab)
        token = int(logits.argmax())
        if ttft is None:
            ttft = time.perf_counter() - t0
        if matcher is not None and not matcher.accept_token(token):
            raise RuntimeError(f"token {token} outside the grammar")  # masked: a bug, not a model
        if token in stop_ids or (matcher is not None and matcher.is_terminated()):
            break
        generated.append(token)
        logits = engine.step(token)
    total = time.perf_counter() - t0
    return Reply(
        text=decode(generated),
        prompt_tokens=len(prompt_ids),
        new_tokens=len(generated),
        ttft_s=ttft or total,
        total_s=total,
        cpu_s=time.thread_time() - cpu0,
    )


def compile_for(tokenizer: Any, vocab_size: int, schema: dict[str, Any] | None) -> Any | None:
    if schema is None:
        return None
    return decoding.compile_grammar(schema, decoding.tokenizer_info(tokenizer, vocab_size))


def percentile(values: Sequence[float], q: float) -> float | None:
    if not values:
        return None
    ordered = sorted(values)
    rank = q / 100 * (len(ordered) - 1)
    low = int(rank)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (rank - low)


def summary(replies: Sequence[Reply]) -> dict[str, float | None]:
    """P50/P95 of whole-reply latency, decode tokens/s after the first token, and compute
    seconds per query (CPU time: what a machine's share of the bill is made of)."""
    decode_time = sum(r.total_s - r.ttft_s for r in replies)
    decoded = sum(max(r.new_tokens - 1, 0) for r in replies)
    return {
        "p50_ms": _ms(percentile([r.total_s for r in replies], 50)),
        "p95_ms": _ms(percentile([r.total_s for r in replies], 95)),
        "ttft_p50_ms": _ms(percentile([r.ttft_s for r in replies], 50)),
        "decode_tokens_per_s": decoded / decode_time if decode_time > 0 and decoded else None,
        "seconds_per_query": sum(r.total_s for r in replies) / len(replies) if replies else None,
        "cpu_seconds_per_query": sum(r.cpu_s for r in replies) / len(replies) if replies else None,
    }


def _ms(seconds: float | None) -> float | None:
    return None if seconds is None else seconds * 1000
