"""A vLLM-native variant answered on vLLM, the engine that will serve it.

vLLM has no token-at-a-time API to put under `engines.greedy`, so each golden row is one
greedy request carrying vLLM's own structured output for the same JSON schema (its xgrammar
backend: the library `engines.greedy` masks with). Requests go one at a time, like every other
variant's: the latency of a single stream, not of a batch. Time to first token is a second
request for the same prompt capped at one token (vLLM's offline API does not stream).

Only built where CUDA and llm-compressor are present (`gpu.skip_reason()` is None); the
arguments are plain functions so they are tested without vLLM.
"""

from __future__ import annotations

import gc
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from .engines import Reply


def engine_args(model_dir: Path, max_model_len: int) -> dict[str, Any]:
    """`vllm.LLM(**engine_args)`: the compressed-tensors checkpoint, as the deployer serves it."""
    return {
        "model": str(model_dir),
        "max_model_len": max_model_len,
        # Greedy needs no seed, and the checkpoint's generation_config must not change sampling.
        "generation_config": "vllm",
        "gpu_memory_utilization": 0.5,  # the merged model's evaluation may still hold memory
        "enforce_eager": True,  # CUDA-graph capture costs more than the golden set's requests
        # The TTFT request would otherwise leave the prompt cached for the timed one.
        "enable_prefix_caching": False,
    }


def sampling_args(schema: dict[str, Any] | None, max_new_tokens: int) -> dict[str, Any]:
    """`SamplingParams` keyword arguments: greedy under the schema, as the other engines run."""
    args: dict[str, Any] = {"temperature": 0.0, "max_tokens": max_new_tokens}
    if schema is not None:
        args["structured_outputs"] = {"json": schema}
    return args


class VllmEngine:
    def __init__(self, model_dir: Path, max_model_len: int) -> None:
        from vllm import LLM

        self.llm = LLM(**engine_args(model_dir, max_model_len))

    def answer(
        self,
        prompt_ids: Sequence[int],
        *,
        schema: dict[str, Any] | None,
        max_new_tokens: int,
        decode: Callable[[list[int]], str],
    ) -> Reply:
        from vllm import SamplingParams, TokensPrompt
        from vllm.sampling_params import StructuredOutputsParams

        def params(limit: int) -> Any:
            args = sampling_args(schema, limit)
            if "structured_outputs" in args:
                args["structured_outputs"] = StructuredOutputsParams(**args["structured_outputs"])
            return SamplingParams(**args)

        prompt = TokensPrompt(prompt_token_ids=list(prompt_ids))
        t0 = time.perf_counter()
        self.llm.generate([prompt], params(1), use_tqdm=False)
        ttft = time.perf_counter() - t0
        t1 = time.perf_counter()
        out = self.llm.generate([prompt], params(max_new_tokens), use_tqdm=False)[0].outputs[0]
        total = time.perf_counter() - t1
        tokens = list(out.token_ids)
        return Reply(
            text=decode(tokens),
            prompt_tokens=len(prompt_ids),
            new_tokens=len(tokens),
            ttft_s=min(ttft, total),
            total_s=total,
            # The engine core is another process and the work is on the GPU: wall time is
            # what the machine is held for.
            cpu_s=total,
        )

    def close(self) -> None:
        import torch

        del self.llm
        gc.collect()
        torch.cuda.empty_cache()
