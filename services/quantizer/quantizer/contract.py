"""The worker's contract, typed both ways (shared.runtime.worker validates each side)."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, Field


class PlannedVariant(BaseModel):
    name: str
    engine: str
    method: str
    kind: str
    scheme: str


class Row(BaseModel):
    id: str
    prompt_input: str


class QuantizeJob(BaseModel):
    base_dir: str
    adapter_dir: str
    out_dir: str
    converter: str
    variants: list[PlannedVariant]
    system_prompt: str
    output_schema: dict[str, Any] | None
    golden: list[Row]
    timed_rows: list[str] = Field(description="golden ids also used for latency")
    calibration_path: str | None = Field(
        default=None, description="the adapter's train split (JSONL), for GPTQ calibration"
    )
    calibration_missing: str = Field(default="", description="why calibration_path is None")
    calibration_rows: int = 256
    max_new_tokens: int
    merge_tolerance: float
    threads: int
    context: int
    max_seq_len: int = 2048


class Measured(BaseModel):
    name: str
    status: str  # evaluated | skipped | failed
    reason: str | None = None
    path: str | None = None
    size_bytes: int | None = None
    replies: dict[str, str] = Field(default_factory=dict)
    figures: dict[str, float | None] = Field(default_factory=dict)


class QuantizeResult(BaseModel):
    merged_dir: str
    merge_max_abs_diff: float
    variants: list[Measured]
    runtime: dict[str, str] = Field(default_factory=dict, description="engines.runtime_info()")
