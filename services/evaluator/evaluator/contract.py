"""The worker contract: what the service sends `worker.evaluate` and what it answers.

Both sides import these models, and nothing heavy is imported here, so the service validates
the answer without loading torch. Models are run from directories the parent has already
fetched and sha-verified; the worker only loads and runs them. Scoring is the parent's.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict


class _Contract(BaseModel):
    # A field the other side does not know is a version skew to fail on, not to ignore.
    model_config = ConfigDict(frozen=True, extra="forbid")


class ModelToRun(_Contract):
    """Full weights, or a base plus a LoRA adapter applied with peft. `key` names its result."""

    key: str
    model_dir: Path
    adapter_dir: Path | None = None


class GoldenInput(_Contract):
    id: str
    input: str


class ProbePrompt(_Contract):
    id: str
    prompt: str


class EvalPayload(_Contract):
    models: list[ModelToRun]
    instructions: str
    golden: list[GoldenInput]
    probes: list[ProbePrompt] = []
    general_text: str | None = None
    batch_size: int
    max_new_tokens: int
    latency_samples: int
    window: int
    perplexity_max_tokens: int
    device: Literal["auto", "cpu", "cuda"]
    precision: Literal["auto", "fp32", "bf16"]


class LocalOutputs(_Contract):
    """One model's raw outputs on the golden set; also what the results cache stores."""

    replies: dict[str, str]
    latency_ms_amortised: list[float]
    latency_ms_single: list[float]
    compute_s_per_example: float
    probe_replies: dict[str, str]
    perplexity: float | None
    device: str
    batch_size: int


class EvalResult(_Contract):
    results: dict[str, LocalOutputs]
