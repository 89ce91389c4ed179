"""What this machine can do, and the recipe's concrete choices for it.

The figures behind the CPU defaults are in services/trainer/README.md: on an AVX2-only CPU
bf16 autocast ran 5-10x slower than fp32, and trl's tiled LM-head loss (built for GPUs with
Triton) ran slower than the model's own cross-entropy.
"""

from __future__ import annotations

import importlib.util
import resource
from typing import TYPE_CHECKING, Any

from shared.models.hardware import cpu_bf16_isa, cpu_trains_bf16

if TYPE_CHECKING:
    from .ml import RecipeOptions


def hardware() -> dict[str, Any]:
    import torch

    on_gpu = torch.cuda.is_available()
    return {
        "device": "cuda" if on_gpu else "cpu",
        "cuda_bf16": bool(on_gpu and torch.cuda.is_bf16_supported()),
        "cpu_bf16": cpu_trains_bf16(),
        "cpu_isa": cpu_bf16_isa(),
        "cpu_capability": torch.backends.cpu.get_cpu_capability(),
        "threads": torch.get_num_threads(),
        "bitsandbytes": _has_bitsandbytes() if on_gpu else False,
        "flash_attention": has_flash_attention() if on_gpu else False,
    }


def _has_bitsandbytes() -> bool:
    return importlib.util.find_spec("bitsandbytes") is not None


def resolve(options: RecipeOptions, hw: dict[str, Any]) -> dict[str, Any]:
    """The concrete precision, batching, checkpointing and quantisation for this machine."""
    on_gpu = hw["device"] == "cuda"
    precision = options.precision
    if precision == "auto":
        if on_gpu:
            precision = "bf16" if hw["cuda_bf16"] else "fp16"
        else:
            precision = "bf16" if hw["cpu_bf16"] else "fp32"
    if precision == "fp16" and not on_gpu:
        precision = "fp32"  # fp16 training needs a GradScaler on a GPU
    quantize = options.quantize
    if quantize == "auto":
        quantize = "4bit" if on_gpu and hw["bitsandbytes"] else "none"
    if quantize == "4bit" and not (on_gpu and hw["bitsandbytes"]):
        quantize = "none"
    batching = options.batching
    # The KL of plain-text replay rows (safe_trainer.replay_kl_loss) is taken row by row in
    # padded batches, in the plain loss path.
    text_kl = options.text_loss == "kl"
    if text_kl and (batching == "padding_free" or options.loss == "fused"):
        raise ValueError("text_loss kl needs padded batches and the plain loss")
    if batching == "auto":
        flat = on_gpu and hw["flash_attention"] and not text_kl
        batching = "padding_free" if flat else "grouped"
    return {
        "precision": precision,
        # CPU: bf16 training only with AMX (shared/models/hardware.py: with AVX512-BF16 alone a
        # step measured slower than fp32); the report says which path this machine took, and why.
        "cpu_bf16": hw["cpu_bf16"],
        "cpu_isa": hw.get("cpu_isa"),
        # padding_free: each micro-batch one row, positions restarting per example; transformers
        # builds the block-diagonal mask from them (flash-attn's varlen kernel on CUDA, a dense
        # boolean mask for sdpa/eager). On the CPU that dense row cost ~10% more than grouped
        # padded rows (attention over the whole row), so grouped is the CPU default.
        "batching": batching,
        # None: the memory planner decides (memory.py): off when the whole batch fits without.
        # QLoRA is for when memory is short, and peft prepares its model before the plan.
        "gradient_checkpointing": {"on": True, "off": False}.get(
            options.gradient_checkpointing, True if quantize == "4bit" else None
        ),
        "quantize": quantize,
        "plain_loss": options.loss == "plain"
        or (options.loss == "auto" and (not on_gpu or text_kl)),
        "text_loss": options.text_loss,
    }


def has_flash_attention() -> bool:
    return importlib.util.find_spec("flash_attn") is not None


def cuda() -> bool:
    import torch

    return torch.cuda.is_available()


def peak_memory() -> dict[str, float]:
    """Peak RSS of this process (and peak CUDA memory when there is a GPU), in MiB."""
    import torch

    peak = {"peak_rss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}
    if torch.cuda.is_available():
        peak["peak_cuda_mib"] = torch.cuda.max_memory_allocated() / 2**20
    return peak
