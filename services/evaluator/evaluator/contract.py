"""The worker contract: what the service sends `worker.evaluate` and what it answers.

Both sides import these models, and nothing heavy is imported here, so the service validates
the answer without loading torch. Models are run from directories the parent has already
fetched and sha-verified; the worker only loads and runs them. Scoring is the parent's.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict


class _Contract(BaseModel):
    # A field the other side does not know is a version skew to fail on, not to ignore.
    model_config = ConfigDict(frozen=True, extra="forbid")


class ModelToRun(_Contract):
    """Full weights, or a base plus a LoRA adapter applied with peft. `key` names its result.

    Each model runs with its own system prompt: a student (the candidate adapter, a quantized
    variant) with the task's short student prompt, as it was trained and will be served; the
    base model with the full instructions (see inputs.model_to_run).
    """

    key: str
    model_dir: Path
    adapter_dir: Path | None = None
    prompt: Literal["student", "instructions"]
    system_prompt: str


class GoldenInput(_Contract):
    id: str
    input: str


class ProbePrompt(_Contract):
    id: str
    prompt: str


class EvalPayload(_Contract):
    models: list[ModelToRun]
    golden: list[GoldenInput]
    # The task's output schema when golden replies are decoded under it; None: free decoding.
    output_schema: dict[str, Any] | None = None
    probes: list[ProbePrompt] = []
    general_text: str | None = None
    batch_size: int
    max_new_tokens: int
    latency_samples: int | None  # golden rows also timed alone and in groups; None: all
    latency_concurrency: int
    window: int
    perplexity_max_tokens: int
    device: Literal["auto", "cpu", "cuda"]
    precision: Literal["auto", "fp32", "bf16"]


class LatencySummary(_Contract):
    n: int
    p50_ms: float | None
    p95_ms: float | None


class Latency(_Contract):
    """Single-stream and concurrent latency over the same golden rows (see ml.py)."""

    single: LatencySummary
    concurrent: LatencySummary
    concurrency: int


class PromptTokens(_Contract):
    """Prompt tokens per request (system prompt, chat template and input) over the golden set."""

    mean: float
    max: int


class LocalOutputs(_Contract):
    """One model's raw outputs on the golden set; also what the results cache stores.

    `prompt_tokens` is in golden order, as in the teacher's result. `latency_ms_single` and
    `latency_ms_concurrent` are over the same rows: all of them, or with a latency_samples cap
    that many spread evenly over the set (worker.latency_rows).
    """

    replies: dict[str, str]
    latency_ms_amortised: list[float]
    latency_ms_single: list[float]
    latency_ms_concurrent: list[float]
    latency: Latency
    prompt: Literal["student", "instructions"]
    prompt_tokens: list[int]
    prompt_tokens_summary: PromptTokens
    decoding: Literal["json_schema", "free"]
    compute_s_per_example: float
    probe_replies: dict[str, str]
    perplexity: float | None
    device: str
    dtype: str
    batch_size: int


class EvalResult(_Contract):
    results: dict[str, LocalOutputs]
