"""The events of production: rollouts, traffic, feedback and drift (the loop's second half).

Part of the one catalog (shared.events.catalog registers and re-exports them); a separate
module only to keep each file readable.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, ClassVar, Literal
from uuid import UUID

from pydantic import Field

from .base import MAX_COUNT, ArtifactRef, Event, Frozen, Name, Reason
from .values import INGEST, NOBODY, ChatMessage, RolloutStage, Who


class RolloutChanged(Event):
    subject: ClassVar[str] = "distillery.rollout.changed.v1"
    producers: ClassVar[Who] = frozenset({"deployer"})
    consumers: ClassVar[Who] = frozenset({"feedback-collector"})
    cycle_id: UUID | None
    deployment_id: UUID
    task_name: Name
    model: ArtifactRef
    stage: RolloutStage
    traffic_share: float = Field(ge=0, le=1)
    reason: Reason


class ArmFigures(Frozen):
    """One arm of a rollout over the current step's window: the rollout rule's inputs."""

    requests: int = Field(ge=0, le=MAX_COUNT)
    errors: int = Field(ge=0, le=MAX_COUNT)
    rated: int = Field(default=0, ge=0, le=MAX_COUNT, description="requests with feedback")
    negative: int = Field(default=0, ge=0, le=MAX_COUNT)
    structured: int = Field(default=0, ge=0, le=MAX_COUNT, description="replies due as JSON")
    schema_invalid: int = Field(default=0, ge=0, le=MAX_COUNT)
    p95_ms: float | None = Field(default=None, ge=0)
    compared: int = Field(default=0, ge=0, le=MAX_COUNT, description="shadow: paired replies")
    agreed: int = Field(default=0, ge=0, le=MAX_COUNT)


class RolloutMeasured(Event):
    """The feedback-collector's online figures for an unfinished rollout's current step, the
    candidate's next to the live model's over the same window; the deployer promotes or rolls
    back on them. Sent when they change; `stage` and `traffic_share` name the step they were
    counted for, so figures of a step already left are ignored."""

    subject: ClassVar[str] = "distillery.rollout.measured.v1"
    producers: ClassVar[Who] = frozenset({"feedback-collector"})
    consumers: ClassVar[Who] = frozenset({"deployer"})
    cycle_id: UUID | None = None
    deployment_id: UUID
    task_name: Name
    stage: RolloutStage
    traffic_share: float = Field(ge=0, le=1)
    window_start: datetime
    window_end: datetime
    candidate: ArmFigures
    live: ArmFigures


class TrafficLogged(Event):
    """One production request; outside gateways may publish this straight onto the bus."""

    subject: ClassVar[str] = "distillery.traffic.logged.v1"
    producers: ClassVar[Who] = INGEST | {"deployer"}
    consumers: ClassVar[Who] = frozenset({"feedback-collector"})
    cycle_id: UUID | None = None
    request_id: UUID
    task_name: Name
    deployment_id: UUID | None = None
    arm: Literal["student", "teacher", "shadow"]
    messages: list[ChatMessage] = Field(min_length=1, max_length=256)
    completion: str = Field(max_length=65536)
    latency_ms: float = Field(ge=0)
    prompt_tokens: int = Field(default=0, ge=0, le=2**53)
    completion_tokens: int = Field(default=0, ge=0, le=2**53)
    model_version: str | None = Field(
        default=None, max_length=128, description="what answered: artifact sha256 or model name"
    )
    stage: RolloutStage | None = Field(default=None, description="the rollout stage, if any")
    prompt_source: Literal["task", "client"] | None = Field(
        default=None,
        description="task: the gateway rendered the routed model's prompt; client: the "
        "request's own system prompt was passed through unchanged",
    )
    ttft_ms: float | None = Field(default=None, ge=0, description="streamed: time to first token")
    error: str | None = Field(
        default=None, max_length=2048, description="why no answer came back (completion empty)"
    )


class FeedbackRecorded(Event):
    """A user's verdict on a logged request; outside apps may publish this directly."""

    subject: ClassVar[str] = "distillery.feedback.recorded.v1"
    producers: ClassVar[Who] = INGEST | {"deployer"}
    consumers: ClassVar[Who] = frozenset({"feedback-collector"})
    cycle_id: UUID | None = None
    request_id: UUID
    task_name: Name
    rating: int | None = Field(default=None, ge=-1, le=5, description="-1/+1 or 1..5")
    correction: str | None = Field(default=None, max_length=65536)
    comment: str | None = Field(default=None, max_length=4096)
    escalate: bool = Field(default=False, description="the user asked for a person to look")
    user_id: str | None = Field(
        default=None,
        max_length=128,
        description="who gave it (the gateway's x-distillery-user, or the app's own user id); "
        "the feedback-collector caps and counts contributions per user",
    )
    key_id: str | None = Field(
        default=None, max_length=64, description="the API key it came through, for per-key caps"
    )


class DriftDetected(Event):
    subject: ClassVar[str] = "distillery.drift.detected.v1"
    producers: ClassVar[Who] = frozenset({"feedback-collector"})
    consumers: ClassVar[Who] = NOBODY
    cycle_id: UUID | None = None
    task_name: Name
    deployment_id: UUID | None = None
    kind: Literal["input", "quality"]
    score: float
    threshold: float
    window_start: str = Field(max_length=64)
    window_end: str = Field(max_length=64)
    evidence: list[Reason] = Field(
        default_factory=list,
        max_length=8,
        description="input drift: window inputs farthest from the reference (PII scrubbed); "
        "quality drift: the rates behind the alarm",
    )
    window_size: int = Field(default=0, ge=0, le=MAX_COUNT, description="events in the window")


class FeedbackDatasetPublished(Event):
    """Production feedback that passed the poisoning guards, as rows curation can merge: the
    `cycle.requested` it starts carries the same artifact, so the next dataset version holds
    these rows (curation filters, dedups and decontaminates them like synthetic ones)."""

    subject: ClassVar[str] = "distillery.feedback.dataset.published.v1"
    producers: ClassVar[Who] = frozenset({"feedback-collector"})
    consumers: ClassVar[Who] = NOBODY
    cycle_id: UUID | None = Field(default=None, description="the cycle it starts, if any")
    task_name: Name
    dataset: ArtifactRef = Field(description="JSONL rows: id, use_case, input, output, lineage")
    examples: int = Field(ge=0, le=MAX_COUNT)
    request_ids: int = Field(ge=0, le=2**53, description="production requests behind the rows")


class RelabelRequested(Event):
    """Production inputs whose answer was rated negative with no correction: synth-data, which
    owns the teacher client and its residency guard, asks the teacher to answer them again."""

    subject: ClassVar[str] = "distillery.relabel.requested.v1"
    producers: ClassVar[Who] = frozenset({"feedback-collector"})
    consumers: ClassVar[Who] = frozenset({"synth-data"})
    cycle_id: UUID | None = None
    task_name: Name
    task_spec: ArtifactRef = Field(description="the applied spec: teacher, prompt and schema")
    inputs: ArtifactRef = Field(description="JSONL rows: id (the request id), input (scrubbed)")
    count: int = Field(ge=1, le=MAX_COUNT)


class RelabelCompleted(Event):
    """The teacher's answers to a `relabel.requested`, checked as a synthetic answer is (schema,
    repairs, votes); inputs it could not answer are counted with their reasons."""

    subject: ClassVar[str] = "distillery.relabel.completed.v1"
    producers: ClassVar[Who] = frozenset({"synth-data"})
    consumers: ClassVar[Who] = frozenset({"feedback-collector"})
    cycle_id: UUID | None = None
    task_name: Name
    labels: ArtifactRef = Field(description="JSONL rows: id, input, output (the answered ones)")
    labeled: int = Field(ge=0, le=MAX_COUNT)
    failed: dict[Name, Annotated[int, Field(ge=0, le=MAX_COUNT)]] = Field(
        default_factory=dict, max_length=64, description="inputs not answered, per reason kind"
    )
