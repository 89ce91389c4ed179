"""How many sequences fit in one micro-batch, and whether gradient checkpointing is needed.

Why: the task spec's batch size is a statement about optimisation (the effective batch), not
about this machine. Before gradient checkpointing was on by default, a batch of 8 SmolLM2-135M
conversations of ~800 tokens ran out of a 24 GiB CPU machine; the same effective batch as 2 x 4
accumulation steps trained fine. So the recipe keeps batch_size x gradient_accumulation_steps
and splits it into micro-batches that fit. Checkpointing recomputes every layer's forward in
the backward pass (a third more compute; on this AVX2 CPU, short rows trained ~1.4x faster
without it), so in `auto` it is on only when the unsplit batch would not fit without it.

The estimate is deliberately coarse and meant to err high: the saved activations per token
(only each layer's input with checkpointing, plus one layer being recomputed) plus the fp32
loss path over the vocabulary per row of logits. The recipe computes logits only where a label
is (see safe_trainer.py): in a packed row exactly the trained tokens, in a padded batch the
union of the rows' trained positions, bounded here by the whole padded row. bench/train.py
prints the estimate next to the measured peak.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
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


def activation_bytes_per_token(shape: Shape, precision: str, checkpointing: bool) -> int:
    b = dtype_bytes(precision)
    # One layer's saved tensors: norms, q/k/v/o, the MLP's three projections, and room for
    # LoRA dropout's copies of their inputs when dropout is on.
    layer = (14 * shape.hidden + 5 * shape.intermediate) * b
    # With checkpointing only each layer's input is kept, and one layer is recomputed at a time.
    return shape.layers * shape.hidden * b + layer if checkpointing else shape.layers * layer


def logits_bytes_per_row(shape: Shape, precision: str) -> int:
    # Logits and their gradient in the model's dtype, and about five fp32 vocabulary-wide
    # tensors in the cross-entropy (upcast, log-probs, their gradient, the softmax, slack).
    # Calibrated on SmolLM2-135M when every token had logits (bf16 + checkpointing, batch 8):
    # peak RSS 6.8-7.9 GiB in bench runs at 810 tokens (8.8 estimated), 8.7 GiB in the demo.
    return shape.vocab * (2 * dtype_bytes(precision) + 20)


def fixed_bytes(shape: Shape, precision: str, quantized: bool) -> int:
    weights = shape.parameters // 2 if quantized else shape.parameters * dtype_bytes(precision)
    return weights + OVERHEAD_BYTES


@dataclass(frozen=True)
class Lengths:
    """What the planner needs of the examples: tokens and labels, longest first."""

    tokens: list[int]
    trained: list[int]
    first_label: int  # the earliest position any example has a label at

    @classmethod
    def of(cls, examples: Iterable[tuple[int, int, int]]) -> Lengths:
        """From (tokens, trained labels, first labelled position) per example."""
        rows = list(examples)
        return cls(
            sorted((t for t, _, _ in rows), reverse=True),
            sorted((n for _, n, _ in rows), reverse=True),
            min((f for _, _, f in rows), default=0),
        )

    def worst(self, micro: int, packed: bool, every_token: bool) -> tuple[int, int]:
        """(tokens, logits rows) of the heaviest micro-batch of `micro` examples."""
        if packed:  # one row of the examples end to end: no padding
            tokens = sum(self.tokens[:micro])
            return tokens, tokens if every_token else sum(self.trained[:micro])
        longest = self.tokens[0] if self.tokens else 0
        # Padded rows get logits at the union of their labelled positions, which lies between
        # the earliest first label and the end of the longest row.
        union = longest if every_token else longest - self.first_label + 1
        return micro * longest, micro * max(0, min(longest, union))


def estimate_peak(
    shape: Shape, plan: dict[str, Any], tokens: int, rows: int, checkpointing: bool
) -> int:
    per_token = activation_bytes_per_token(shape, plan["precision"], checkpointing)
    fixed = fixed_bytes(shape, plan["precision"], plan["quantize"] == "4bit")
    return fixed + per_token * tokens + logits_bytes_per_row(shape, plan["precision"]) * rows


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
    lengths: Lengths,
    budget: int,
) -> dict[str, Any]:
    """Checkpointing, micro-batch, accumulation and the estimate behind them."""
    packed = plan["batching"] == "padding_free"
    every_token = not plan["plain_loss"]  # trl's loss scores every token

    def peak(micro: int, checkpointing: bool) -> int:
        tokens, rows = lengths.worst(micro, packed, every_token)
        return estimate_peak(shape, plan, tokens, rows, checkpointing)

    checkpointing = plan["gradient_checkpointing"]
    if checkpointing is None:  # auto: recompute only when the whole batch would not fit
        checkpointing = peak(batch_size, False) > budget
    micro, steps = fit_micro_batch(
        batch_size, accumulation, lambda m: peak(m, checkpointing) <= budget
    )
    return {
        "gradient_checkpointing": checkpointing,
        "micro_batch": micro,
        "gradient_accumulation_steps": steps,
        "longest_sequence": lengths.tokens[0] if lengths.tokens else 0,
        "memory_budget_mib": round(budget / 2**20),
        "estimated_peak_mib": round(peak(micro, checkpointing) / 2**20),
    }


def memory_budget(override_mib: int | None) -> int:
    if override_mib is not None:
        return override_mib * 2**20
    return int(available_bytes() * BUDGET_SHARE)
