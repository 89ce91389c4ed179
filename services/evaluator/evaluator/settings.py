"""Evaluator settings (env prefix EVALUATOR_); built at start-up by main.create_app."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

NAME = "evaluator"


class EvaluatorSettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="EVALUATOR_", extra="ignore")

    work_dir: Path | None = Field(
        default=None, description="fetched models and worker logs; null: <home>/evaluator"
    )
    device: Literal["auto", "cpu", "cuda"] = "auto"
    precision: Literal["auto", "fp32", "bf16"] = Field(
        default="auto",
        description="auto: bf16 on CUDA and on CPUs with AMX/AVX512-BF16 (about twice as fast "
        "there), else fp32",
    )
    batch_size: int = Field(
        default=16,
        ge=1,
        le=512,
        description="golden examples per generate, bucketed by prompt length (bench/eval.py)",
    )
    max_new_tokens: int = Field(default=128, ge=1, le=8192)
    latency_samples: int | None = Field(
        default=None,
        ge=0,
        description="a cap on the golden rows also timed one at a time and in concurrent "
        "groups; null: every row. A capped set is spread evenly over the golden set; below 50 "
        "the P95 rests on a handful of samples. 0: no latency runs (the gate falls back to "
        "amortised batch timings)",
    )
    latency_concurrency: int = Field(
        default=4,
        ge=1,
        le=512,
        description="concurrent requests per group for the concurrent latency: each request "
        "waits its group's wall time",
    )
    structured_decoding: bool = Field(
        default=True,
        description="decode golden replies under the spec's output_schema (xgrammar), as "
        "serving does; false: free greedy decoding, for comparison",
    )
    perplexity_max_tokens: int = Field(
        default=8192, ge=0, description="general-text tokens scored for perplexity (0: skip)"
    )
    compute_hour_usd: float = Field(
        default=2.0, ge=0, description="$ per hour of the accelerator the student is served on"
    )
    teacher_max_tokens: int = Field(default=512, ge=1)
    judge: bool = Field(default=False, description="also grade the candidate with the teacher")
    max_concurrent_evaluations: int = Field(
        default=1,
        ge=1,
        description="evaluations run at once in this process, adapters and variants together",
    )
