"""How many sequences fit in one micro-batch, from the model's shape and the memory there is.

Why: the task spec's batch size is a statement about optimisation (the effective batch), not
about this machine. Before gradient checkpointing was on by default, a batch of 8 SmolLM2-135M
conversations ran out of a 24 GiB CPU machine; the same effective batch as 2 x 4
accumulation steps trained fine. So the recipe keeps batch_size x gradient_accumulation_steps
and splits it into micro-batches that fit.

The estimate is deliberately coarse and meant to err high: per trained token, the fp32 loss
path over the vocabulary (logits, their upcast, log-softmax and its gradient) plus the saved
activations (only each layer's input with gradient checkpointing, plus one layer being
recomputed). bench/train.py prints it next to the measured peak.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

# Process overhead beyond the weights: the torch/transformers runtime, allocator slack.
OVERHEAD_BYTES = 1 << 30
# Of the memory available, the share a training run may plan to use.
BUDGET_SHARE = 0.7


@dataclass(frozen=True)
class Shape:
    parameters: int
    hidden: int
    intermediate: int
    layers: int
    vocab: int

    @classmethod
    def of(cls, config: Any, parameters: int) -> Shape:
        hidden = int(config.hidden_size)
        return cls(
            parameters=parameters,
            hidden=hidden,
            intermediate=int(getattr(config, "intermediate_size", 4 * hidden)),
            layers=int(config.num_hidden_layers),
            vocab=int(config.vocab_size),
        )


def dtype_bytes(precision: str) -> int:
    return 2 if precision in ("bf16", "fp16") else 4


def bytes_per_token(shape: Shape, precision: str, checkpointing: bool) -> int:
    b = dtype_bytes(precision)
    # logits and their gradient in the model's dtype, and about five fp32 vocabulary-wide
    # tensors in the cross-entropy (upcast, log-probs, their gradient, the softmax, slack).
    # Calibrated on SmolLM2-135M, bf16 + checkpointing, batch 8: peak RSS 6.8-7.9 GiB in
    # bench runs at 810 tokens (8.8 estimated), 8.7 GiB in the demo's worker at 824 (8.9).
    loss = shape.vocab * (2 * b + 20)
    # One layer's saved tensors: norms, q/k/v/o, the MLP's three projections, and room for
    # LoRA dropout's copies of their inputs when dropout is on.
    layer = (14 * shape.hidden + 5 * shape.intermediate) * b
    # With checkpointing only each layer's input is kept, and one layer is recomputed at a time.
    kept = shape.layers * shape.hidden * b + layer if checkpointing else shape.layers * layer
    return loss + kept


def fixed_bytes(shape: Shape, precision: str, quantized: bool) -> int:
    weights = shape.parameters // 2 if quantized else shape.parameters * dtype_bytes(precision)
    return weights + OVERHEAD_BYTES


def estimate_peak(shape: Shape, plan: dict[str, Any], micro_batch: int, longest: int) -> int:
    per_token = bytes_per_token(shape, plan["precision"], plan["gradient_checkpointing"])
    fixed = fixed_bytes(shape, plan["precision"], plan["quantize"] == "4bit")
    return fixed + per_token * micro_batch * longest


def fit_micro_batch(
    batch_size: int, accumulation: int, fits: Callable[[int], bool]
) -> tuple[int, int]:
    """The largest micro-batch ≤ batch_size that divides the effective batch and `fits`.

    Returns (micro_batch, accumulation steps); their product is batch_size x accumulation.
    A single sequence is always allowed: if even that does not fit, the run fails loudly
    in torch rather than here on an estimate.
    """
    effective = batch_size * accumulation
    for micro in range(batch_size, 0, -1):
        if effective % micro == 0 and fits(micro):
            return micro, effective // micro
    return 1, effective


def available_bytes() -> int:
    """Free memory for this run: the GPU's free memory, else the host's (cgroup-aware)."""
    import torch

    if torch.cuda.is_available():
        free, _total = torch.cuda.mem_get_info()
        return int(free)
    available = _meminfo_available()
    limit = _cgroup_room()
    return min(available, limit) if limit is not None else available


def _meminfo_available() -> int:
    for line in Path("/proc/meminfo").read_text().splitlines():
        if line.startswith("MemAvailable:"):
            return int(line.split()[1]) * 1024
    raise RuntimeError("/proc/meminfo has no MemAvailable")


def _cgroup_room() -> int | None:
    limit, usage = Path("/sys/fs/cgroup/memory.max"), Path("/sys/fs/cgroup/memory.current")
    try:
        raw = limit.read_text().strip()
        if raw == "max":
            return None
        return int(raw) - int(usage.read_text().strip())
    except (OSError, ValueError):
        return None


def plan_batches(
    shape: Shape,
    plan: dict[str, Any],
    batch_size: int,
    accumulation: int,
    longest: int,
    budget: int,
) -> dict[str, Any]:
    """Micro-batch, accumulation and the estimate behind them, for the run's plan."""
    micro, steps = fit_micro_batch(
        batch_size,
        accumulation,
        lambda m: estimate_peak(shape, plan, m, longest) <= budget,
    )
    return {
        "micro_batch": micro,
        "gradient_accumulation_steps": steps,
        "longest_sequence": longest,
        "memory_budget_mib": round(budget / 2**20),
        "estimated_peak_mib": round(estimate_peak(shape, plan, micro, longest) / 2**20),
    }


def memory_budget(override_mib: int | None) -> int:
    if override_mib is not None:
        return override_mib * 2**20
    return int(available_bytes() * BUDGET_SHARE)
