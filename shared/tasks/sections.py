"""The task spec's sections for the stages that run it: how synth-data generates, how
curation filters, how the trainer searches and replays, how the deployer rolls out and how the
feedback collector watches. `shared.tasks.spec.TaskSpec` holds one of each."""

from __future__ import annotations

from typing import Literal

from pydantic import ConfigDict, Field, model_validator

from shared.events.base import Frozen


class Spec(Frozen):
    # Unknown keys are typos: refuse them rather than silently ignore a setting.
    model_config = ConfigDict(frozen=True, extra="forbid")


class Range(Spec):
    low: float
    high: float

    @model_validator(mode="after")
    def _ordered(self) -> Range:
        if self.low > self.high:
            raise ValueError(f"low ({self.low}) must not exceed high ({self.high})")
        return self


class SearchSpace(Spec):
    rank: list[int] = Field(default=[8, 16], min_length=1)
    alpha: list[int] = Field(default=[16, 32], min_length=1)
    learning_rate: Range = Range(low=1e-4, high=5e-4)
    epochs: list[int] = Field(default=[1, 2], min_length=1)


class Replay(Spec):
    """Rows where the base model answers general prompts as it does today, mixed into the
    task's training rows so the adapter learns to leave everything else alone: without them
    a LoRA fitted to one task forgets the base's general skills (bench/README.md, learn.py:
    general probes 17 of 48 right before, 1 after; 17 after with a share of 0.15)."""

    share: float = Field(
        default=0.0, ge=0, le=1, description="replay rows per training row; 0 turns replay off"
    )
    temperature: float = Field(
        default=1.0,
        gt=0,
        le=2,
        description="replies sampled from the base at this temperature (1.0: its own "
        "distribution; greedy replies sharpen it and raise general perplexity)",
    )
    max_new_tokens: int = Field(default=128, ge=8, le=1024)
    text_share: float = Field(
        default=0.0,
        ge=0,
        le=1,
        description="plain-text rows per training row: the base's own continuations of short "
        "openers, no chat template, trained under the language-model loss on every token. "
        "Chat replies keep a chat model's general skills; a pretrained base's general text "
        "lies outside any chat template, and these keep its perplexity there",
    )
    text_loss: Literal["lm", "kl"] = Field(
        default="lm",
        description="how plain-text rows are learned: 'lm', the cross-entropy of the base's "
        "sampled continuation; 'kl', the divergence from the base's own next-token "
        "distribution at every position (zero while the student equals the base, so it "
        "costs the task nothing until the student drifts)",
    )


class Training(Spec):
    search: SearchSpace = SearchSpace()
    trials: int = Field(default=1, ge=1, le=100)
    batch_size: int = Field(default=8, ge=1)
    gradient_accumulation_steps: int = Field(default=1, ge=1)
    seed: int = 0
    distillation: Literal["sft", "gkd"] = "sft"
    replay: Replay = Replay()


class Synthesis(Spec):
    examples: int = Field(default=200, ge=1, le=1_000_000)
    styles: list[str] = Field(default=["terse", "detailed", "informal"], min_length=1)
    self_consistency: int = Field(default=1, ge=1, le=15, description="k samples, majority kept")
    max_repairs: int = Field(default=1, ge=0, le=5)


class Curation(Spec):
    near_duplicate_threshold: float = Field(default=0.85, gt=0, le=1)
    min_chars: int = Field(default=1, ge=0)
    max_chars: int = Field(default=8000, ge=1)
    review_share: float = Field(default=0.0, ge=0, le=1)
    validation_share: float = Field(default=0.1, gt=0, lt=1)
    decontamination_ngram: int = Field(default=8, ge=3, le=50)
    judge: bool = False


class Rollout(Spec):
    shadow_requests: int = Field(default=200, ge=0)
    ab_share: float = Field(default=0.1, gt=0, le=1)
    ab_requests: int = Field(default=500, ge=0)
    max_error_rate: float = Field(default=0.02, ge=0, le=1)
    min_agreement: float = Field(
        default=0.8,
        ge=0,
        le=1,
        description="shadow: the share of the candidate's replies that must agree with the "
        "live model's; rolled back when certainly below (Wilson 99 % upper bound)",
    )
    # Serving parity: before a candidate takes traffic, this many golden rows are replayed
    # through its server and compared with the replies measured for that very variant.
    parity_rows: int = Field(default=16, ge=1, le=1000)
    parity_tolerance: float = Field(
        default=0.0, ge=0, le=1, description="share of the replayed rows allowed to differ"
    )


class Monitoring(Spec):
    """Drift windows, thresholds, false-alarm budget and retrain policy for this task (the
    feedback collector). A field left unset takes the collector's FEEDBACK_* default."""

    drift_window: int | None = Field(
        default=None, ge=20, le=100_000, description="input drift: latest live requests compared"
    )
    drift_alpha: float | None = Field(
        default=None, gt=0, lt=0.5, description="input drift: false-alarm probability per test"
    )
    quality_baseline: float | None = Field(
        default=None, gt=0, lt=1, description="quality drift: expected share of bad answers"
    )
    quality_shifted: float | None = Field(
        default=None, gt=0, lt=1, description="quality drift: the share the CUSUM is tuned to"
    )
    quality_false_alarm_run: float | None = Field(
        default=None, gt=1, description="quality drift: mean live requests between false alarms"
    )
    retrain_every_days: float | None = Field(
        default=None,
        gt=0,
        description="a scheduled cycle this often; unset: FEEDBACK_RETRAIN_EVERY_DAYS (none)",
    )
    cooldown_hours: float | None = Field(default=None, ge=0)
    min_new_examples: int | None = Field(default=None, ge=1)
    max_cycles: int | None = Field(default=None, ge=1, description="per budget window")
    budget_window_days: float | None = Field(default=None, gt=0)

    @model_validator(mode="after")
    def _quality_pair(self) -> Monitoring:
        # Refused when the spec is applied rather than found by the collector at run time.
        b, s = self.quality_baseline, self.quality_shifted
        if b is not None and s is not None and b >= s:
            raise ValueError(f"monitoring.quality_baseline {b} must be below quality_shifted {s}")
        return self
