"""The quantizer's answer: every variant it made (or could not), each judged on the engine that
serves it, and the one chosen to ship.

Part of the one catalog (shared.events.catalog registers and re-exports it). It replaces, for
the deployer, the one-variant-per-event `quantization.completed.v1`: variants are compared
with each other and with the merged model, so they travel and are decided together.
"""

from __future__ import annotations

from typing import ClassVar, Literal
from uuid import UUID

from pydantic import Field

from .base import MAX_COUNT, MAX_ITEMS, ArtifactRef, Event, Frozen, Name, Reason
from .values import GateResult, Who

Engine = Literal["transformers", "llama.cpp", "vllm"]
VariantStatus = Literal["evaluated", "skipped", "failed"]


class VariantReport(Frozen):
    """One variant: how it was made, what it measured on its own engine, and its gates."""

    name: Name = Field(description="merged | gguf-f16 | gguf-q8_0 | gguf-q4_k_m | vllm-w8a16 ...")
    engine: Engine
    method: str = Field(max_length=128, description="e.g. 'llama.cpp Q8_0', 'llm-compressor W4A16'")
    status: VariantStatus
    reason: str | None = Field(
        default=None, max_length=4000, description="why skipped or failed ('needs a GPU' ...)"
    )
    artifact: ArtifactRef | None = Field(
        default=None, description="the GGUF file, or the model manifest; null unless evaluated"
    )
    size_bytes: int | None = Field(default=None, ge=0, le=2**53)
    quality: float | None = Field(default=None, ge=0, le=1)
    retention: float | None = Field(default=None, ge=0, description="quality / merged quality")
    schema_validity: float | None = Field(default=None, ge=0, le=1)
    p50_ms: float | None = Field(default=None, ge=0)
    p95_ms: float | None = Field(default=None, ge=0)
    decode_tokens_per_s: float | None = Field(default=None, ge=0)
    cost_per_query_usd: float | None = Field(default=None, ge=0)
    gates: list[GateResult] = Field(default_factory=list, max_length=64)
    passed: bool = False


class VariantSelected(Event):
    """The variants of a passing adapter and the one chosen: the cheapest that passes every
    gate and the retention floor, else the merged model if it passes its serving gates, with
    the reason either way. When no form passes them, there is no variant.selected: the
    quantizer ends the cycle (cycle.failed, stage quantization)."""

    subject: ClassVar[str] = "distillery.variant.selected.v1"
    producers: ClassVar[Who] = frozenset({"quantizer"})
    consumers: ClassVar[Who] = frozenset({"deployer"})
    cycle_id: UUID
    task_name: Name
    task_version: int = Field(ge=1, le=MAX_COUNT)
    task_spec: ArtifactRef = Field(description="the applied spec, self-contained")
    iteration: int = Field(default=1, ge=1, le=MAX_COUNT)
    evaluation_id: UUID = Field(description="the adapter's passing evaluation")
    source_adapter: ArtifactRef
    base_model: ArtifactRef
    merged_model: ArtifactRef = Field(description="base + adapter merged, safetensors")
    chosen: Name = Field(description="the chosen variant's name (one of variants)")
    chosen_engine: Engine
    chosen_model: ArtifactRef
    reason: Reason
    variants: list[VariantReport] = Field(min_length=1, max_length=MAX_ITEMS)
    report: ArtifactRef = Field(description="report.json: every figure, per variant")
