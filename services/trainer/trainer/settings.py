"""Trainer settings (env prefix TRAINER_); the platform's own come from PlatformSettings."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

NAME = "trainer"
Auto = Literal["auto"]


class TrainerSettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="TRAINER_", extra="ignore")

    work_dir: Path | None = Field(
        default=None,
        description="durable folder for run checkpoints and the base-model cache; "
        "default: <DISTILLERY_HOME>/trainer. Put it on a volume that survives restarts.",
    )
    progress_interval_s: float = Field(
        default=5.0, ge=0, description="at most one training.progressed per this many seconds"
    )
    checkpoint_steps: int = Field(default=20, ge=1, description="checkpoint every N steps")
    evaluations_per_trial: int = Field(
        default=4, ge=1, description="validation passes per trial (the pruner's signal)"
    )
    max_steps: int | None = Field(
        default=None, ge=1, description="cap on every trial's steps; smoke runs and tests"
    )
    precision: Auto | Literal["fp32", "bf16", "fp16"] = "auto"
    gradient_checkpointing: Auto | Literal["on", "off"] = "auto"
    # auto: grouped by length on the CPU, padding-free on CUDA with flash-attn (ml.py says why)
    batching: Auto | Literal["padded", "grouped", "padding_free"] = "auto"
    quantize: Auto | Literal["4bit", "none"] = "auto"
    loss: Auto | Literal["plain", "fused"] = "auto"
    lora_dropout: float = Field(
        default=0.0, ge=0.0, lt=1.0, description="LoRA dropout; 0.05 halved CPU throughput"
    )
    launcher: str | None = Field(
        default=None,
        description='run each trial through this launcher, e.g. "accelerate launch '
        '--num_processes 4" for data-parallel training on 4 GPUs; null: in the worker',
    )
    memory_budget_mib: int | None = Field(
        default=None,
        ge=256,
        description="memory a run may plan for when it splits the spec's batch into "
        "micro-batches; null: 70% of the free host (or GPU) memory",
    )
    torch_threads: int | None = Field(default=None, ge=1, description="null: torch's default")
    keep_run_dirs: bool = Field(
        default=False, description="keep a finished run's local checkpoints (they are in the store)"
    )
