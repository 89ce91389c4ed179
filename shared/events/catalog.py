"""Every event of the loop, declared once. Services import these; nobody types a subject.

Within a version only optional fields may be added. A breaking change is a new class whose
subject ends in `.v2`; both live here until the old one has no producer left.
"""

from __future__ import annotations

from typing import ClassVar, Literal
from uuid import UUID

from pydantic import Field

from .base import MAX_COUNT, MAX_ITEMS, ArtifactRef, Count, Event, Name, Reason
from .production import (
    ArmFigures,
    DriftDetected,
    FeedbackDatasetPublished,
    FeedbackRecorded,
    RelabelCompleted,
    RelabelRequested,
    RolloutChanged,
    RolloutMeasured,
    TrafficLogged,
)
from .quantization import VariantReport, VariantSelected
from .values import (
    IDENTITIES,
    INGEST,
    NOBODY,
    OPS,
    SERVICES,
    STAGES,
    ChatMessage,
    Confusion,
    CycleReason,
    GateResult,
    QuantFormat,
    RolloutStage,
    Who,
)


class TaskRegistered(Event):
    """A task spec was applied; versions are immutable, a re-apply makes a new version."""

    subject: ClassVar[str] = "distillery.task.registered.v1"
    producers: ClassVar[Who] = OPS
    consumers: ClassVar[Who] = frozenset({"synth-data"})
    task_name: Name
    task_version: int = Field(ge=1, le=MAX_COUNT)
    spec: ArtifactRef


class CycleRequested(Event):
    """Start of an improvement cycle; its event's cycle_id names the cycle."""

    subject: ClassVar[str] = "distillery.cycle.requested.v1"
    producers: ClassVar[Who] = OPS | {"feedback-collector"}
    # The feedback-collector counts every cycle of a task as in flight, an operator's too.
    consumers: ClassVar[Who] = frozenset({"synth-data", "feedback-collector"})
    cycle_id: UUID
    task_name: Name
    task_version: int | None = Field(
        default=None, ge=1, le=MAX_COUNT, description="null: the latest"
    )
    task_spec: ArtifactRef | None = Field(
        default=None, description="the applied spec; null: synth-data looks the task up"
    )
    reason: CycleReason = "manual"
    feedback_dataset: ArtifactRef | None = Field(
        default=None, description="production feedback rows for curation to merge (issue 14)"
    )


class CycleIterationRequested(Event):
    """The candidate failed its gates; generate data focused on the failing slices."""

    subject: ClassVar[str] = "distillery.cycle.iteration.requested.v1"
    producers: ClassVar[Who] = frozenset({"evaluator"})
    consumers: ClassVar[Who] = frozenset({"synth-data"})
    cycle_id: UUID
    task_name: Name
    task_version: int = Field(ge=1, le=MAX_COUNT)
    task_spec: ArtifactRef = Field(description="the applied spec, self-contained")
    iteration: int = Field(ge=2, le=MAX_COUNT, description="1 is the cycle's first pass")
    failing_slices: list[Name] = Field(min_length=1, max_length=MAX_ITEMS)
    evaluation_report: ArtifactRef
    error_patterns: list[Confusion] = Field(
        default_factory=list,
        max_length=MAX_ITEMS,
        description="the student's most frequent confusions per field, for synth-data to aim at",
    )


class CycleFailed(Event):
    subject: ClassVar[str] = "distillery.cycle.failed.v1"
    producers: ClassVar[Who] = STAGES
    # The retrain policy counts cycles in flight: a failed one must free its task.
    consumers: ClassVar[Who] = frozenset({"feedback-collector"})
    cycle_id: UUID
    task_name: Name
    stage: Literal["synth", "curation", "training", "evaluation", "quantization", "rollout"]
    reason: Reason


class SynthCompleted(Event):
    subject: ClassVar[str] = "distillery.synth.completed.v1"
    producers: ClassVar[Who] = frozenset({"synth-data"})
    consumers: ClassVar[Who] = frozenset({"curation"})
    cycle_id: UUID
    task_name: Name
    task_version: int = Field(ge=1, le=MAX_COUNT)
    task_spec: ArtifactRef = Field(description="the applied spec, self-contained")
    iteration: int = Field(default=1, ge=1, le=MAX_COUNT)
    batch: ArtifactRef = Field(description="JSONL of generated examples")
    examples: int = Field(ge=0, le=MAX_COUNT)
    examples_per_slice: dict[Name, Count] = Field(default_factory=dict, max_length=MAX_ITEMS)
    prompt_tokens: int = Field(default=0, ge=0, le=2**53)
    completion_tokens: int = Field(default=0, ge=0, le=2**53)
    cost_usd: float = Field(default=0.0, ge=0)
    feedback_dataset: ArtifactRef | None = Field(
        default=None, description="the cycle's feedback rows, merged by curation (iteration 1)"
    )


class DatasetPublished(Event):
    """An immutable, content-addressed dataset version is ready for training."""

    subject: ClassVar[str] = "distillery.dataset.published.v1"
    producers: ClassVar[Who] = frozenset({"curation"})
    # The feedback-collector keeps the latest one per task as input drift's reference.
    consumers: ClassVar[Who] = frozenset({"trainer", "feedback-collector"})
    cycle_id: UUID
    task_name: Name
    task_version: int = Field(ge=1, le=MAX_COUNT)
    task_spec: ArtifactRef = Field(description="the applied spec, self-contained")
    iteration: int = Field(default=1, ge=1, le=MAX_COUNT)
    dataset_version: str = Field(max_length=128, description="sha256 of the manifest")
    manifest: ArtifactRef
    train: ArtifactRef
    validation: ArtifactRef
    train_examples: int = Field(ge=0, le=MAX_COUNT)
    validation_examples: int = Field(ge=0, le=MAX_COUNT)


class TrainingProgressed(Event):
    subject: ClassVar[str] = "distillery.training.progressed.v1"
    producers: ClassVar[Who] = frozenset({"trainer"})
    consumers: ClassVar[Who] = NOBODY
    cycle_id: UUID
    run_id: UUID
    trial: int | None = Field(default=None, ge=0, le=MAX_COUNT)
    step: int = Field(ge=0, le=MAX_COUNT)
    total_steps: int = Field(ge=0, le=MAX_COUNT)
    loss: float | None = Field(default=None, ge=0)
    tokens_per_second: float | None = Field(default=None, ge=0)
    eta_seconds: float | None = Field(default=None, ge=0)


class TrainingCompleted(Event):
    subject: ClassVar[str] = "distillery.training.completed.v1"
    producers: ClassVar[Who] = frozenset({"trainer"})
    consumers: ClassVar[Who] = frozenset({"evaluator"})
    cycle_id: UUID
    run_id: UUID
    task_name: Name
    task_version: int = Field(ge=1, le=MAX_COUNT)
    task_spec: ArtifactRef = Field(description="the applied spec, self-contained")
    iteration: int = Field(default=1, ge=1, le=MAX_COUNT)
    dataset_version: str = Field(max_length=128)
    base_model: ArtifactRef = Field(description="safetensors of the base, by content hash")
    adapter: ArtifactRef
    report: ArtifactRef
    hyperparameters: dict[Name, float | Count | str] = Field(
        default_factory=dict, max_length=MAX_ITEMS
    )
    validation_loss: float | None = Field(default=None, ge=0)


# The key an adapter's golden-row replies have in its evaluation report (`replies`), as a
# quantizer report keys each variant's: what serving parity compares a served adapter with.
ADAPTER_VARIANT = "adapter"


class EvaluationCompleted(Event):
    """The verdict on a candidate. For an adapter, `report` (JSON) also holds `base_model` (the
    base's ref), `replies[ADAPTER_VARIANT]` (golden row id -> reply) and `max_new_tokens`."""

    subject: ClassVar[str] = "distillery.evaluation.completed.v1"
    producers: ClassVar[Who] = frozenset({"evaluator"})
    consumers: ClassVar[Who] = frozenset({"quantizer", "deployer"})
    cycle_id: UUID
    evaluation_id: UUID
    task_name: Name
    task_version: int = Field(ge=1, le=MAX_COUNT)
    task_spec: ArtifactRef = Field(description="the applied spec, self-contained")
    iteration: int = Field(default=1, ge=1, le=MAX_COUNT)
    candidate: ArtifactRef
    candidate_kind: Literal["adapter", "quantized"]
    quant_format: QuantFormat | None = None
    passed: bool
    gates: list[GateResult] = Field(default_factory=list, max_length=MAX_ITEMS)
    metrics: dict[Name, float] = Field(default_factory=dict, max_length=MAX_ITEMS)
    failing_slices: list[Name] = Field(default_factory=list, max_length=MAX_ITEMS)
    report: ArtifactRef


class QuantizationCompleted(Event):
    """One quantized variant, for the evaluator. The quantizer now answers with
    `variant.selected` (every variant judged on its own engine, and the choice) and no longer
    publishes this; it stays until the evaluator's variant stage is retired."""

    subject: ClassVar[str] = "distillery.quantization.completed.v1"
    producers: ClassVar[Who] = frozenset({"quantizer"})
    consumers: ClassVar[Who] = frozenset({"evaluator"})
    cycle_id: UUID
    task_name: Name
    task_version: int = Field(ge=1, le=MAX_COUNT)
    task_spec: ArtifactRef = Field(description="the applied spec, self-contained")
    source_adapter: ArtifactRef
    quant_format: QuantFormat
    model: ArtifactRef = Field(description="merged and quantized weights")


class DeadLettered(Event):
    """A message a consumer gave up on, with why. Payload text is kept for diagnosis."""

    subject: ClassVar[str] = "distillery.deadletter.recorded.v1"
    producers: ClassVar[Who] = SERVICES | OPS
    consumers: ClassVar[Who] = NOBODY
    cycle_id: UUID | None = None
    consumer: str = Field(max_length=256)
    original_subject: str = Field(max_length=256)
    original_event_id: str | None = Field(default=None, max_length=64)
    error_kind: Literal["validation", "permanent", "exhausted"]
    reason: Reason
    deliveries: int = Field(ge=1, le=MAX_COUNT)
    payload_excerpt: str = Field(max_length=8192)


CATALOG: dict[str, type[Event]] = {
    cls.subject: cls
    for cls in (
        TaskRegistered,
        CycleRequested,
        CycleIterationRequested,
        CycleFailed,
        SynthCompleted,
        DatasetPublished,
        TrainingProgressed,
        TrainingCompleted,
        EvaluationCompleted,
        QuantizationCompleted,
        VariantSelected,
        RolloutChanged,
        RolloutMeasured,
        TrafficLogged,
        FeedbackRecorded,
        FeedbackDatasetPublished,
        RelabelRequested,
        RelabelCompleted,
        DriftDetected,
        DeadLettered,
    )
}


__all__ = [
    "ADAPTER_VARIANT",
    "CATALOG",
    "IDENTITIES",
    "INGEST",
    "NOBODY",
    "OPS",
    "SERVICES",
    "STAGES",
    "ArmFigures",
    "ChatMessage",
    "Confusion",
    "CycleFailed",
    "CycleIterationRequested",
    "CycleReason",
    "CycleRequested",
    "DatasetPublished",
    "DeadLettered",
    "DriftDetected",
    "EvaluationCompleted",
    "FeedbackDatasetPublished",
    "FeedbackRecorded",
    "GateResult",
    "QuantFormat",
    "QuantizationCompleted",
    "RelabelCompleted",
    "RelabelRequested",
    "RolloutChanged",
    "RolloutMeasured",
    "RolloutStage",
    "SynthCompleted",
    "TaskRegistered",
    "TrafficLogged",
    "TrainingCompleted",
    "TrainingProgressed",
    "VariantReport",
    "VariantSelected",
    "Who",
    "event_class",
]


def event_class(subject: str) -> type[Event]:
    try:
        return CATALOG[subject]
    except KeyError:
        raise KeyError(f"no event in the catalog has subject {subject!r}") from None
