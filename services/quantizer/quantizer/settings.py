"""Quantizer settings (env prefix QUANTIZER_); built at start-up by main.create_app."""

from __future__ import annotations

import sys
from pathlib import Path

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

NAME = "quantizer"

# Where `make setup` unpacks llama.cpp's HF->GGUF converter from the llama-cpp-python sdist
# (the wheel does not ship it, nor does the `gguf` package).
DEFAULT_CONVERTER = Path(sys.prefix) / "share" / "llama.cpp" / "convert_hf_to_gguf.py"


class QuantizerSettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="QUANTIZER_", extra="ignore")

    work_dir: Path | None = Field(
        default=None, description="fetched models, variants and worker logs; null: <home>/quantizer"
    )
    converter: Path = Field(
        default=DEFAULT_CONVERTER, description="llama.cpp's convert_hf_to_gguf.py"
    )
    always: list[str] = Field(
        default=["gguf", "int8", "int4"],
        description="quantization targets made for every spec that asks for quantization at "
        "all (F16, Q8_0 and Q4_K_M GGUF by default); the spec's own list is added to these. A "
        "spec with `quantization: []` ships its adapter unquantized and is left alone",
    )
    merge_tolerance: float = Field(
        default=1e-3,
        gt=0,
        description="largest |logit| difference allowed between merged and base+adapter",
    )
    max_new_tokens: int = Field(default=128, ge=1, le=8192)
    latency_samples: int | None = Field(
        default=None, ge=1, description="golden rows also timed one by one; null: every row"
    )
    threads: int = Field(default=2, ge=1, le=256, description="llama.cpp and torch threads")
    context: int = Field(default=2048, ge=128, description="llama.cpp context window")
    compute_hour_usd: float = Field(
        default=2.0, ge=0, description="$ per hour of the machine a variant is served on"
    )
    calibration_rows: int = Field(
        default=256, ge=1, le=100_000, description="training rows for GPTQ calibration"
    )
