"""Synth-data settings (env prefix SYNTH_DATA_); the task spec carries the per-task knobs."""

from __future__ import annotations

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict


class SynthDataSettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="SYNTH_DATA_", extra="ignore")

    # The operator's data-residency switch, on top of the spec's own allow-list: a spec author
    # cannot widen it. Empty: the spec's list alone decides. JSON in the environment:
    # SYNTH_DATA_ALLOWED_TEACHER_HOSTS='["llm.eu.internal"]'.
    allowed_teacher_hosts: list[str] = Field(default_factory=list)

    input_max_tokens: int = Field(default=512, ge=1, description="per written input")
    output_max_tokens: int = Field(default=512, ge=1, description="per answer or repair")

    # Per request: attempts on 429, 5xx, timeouts and dropped connections; after the last one
    # the message is retried later (TransientError) and the cache keeps what was paid for.
    max_attempts: int = Field(default=5, ge=1, le=20)
    backoff_base_s: float = Field(default=1.0, gt=0)
    backoff_cap_s: float = Field(default=30.0, gt=0)

    edge_case_share: float = Field(default=0.2, ge=0, le=1, description="of each use case")
    progress_every: int = Field(default=20, ge=1, description="examples between progress lines")
    # Below this share of accepted examples the teacher or the prompts are broken: fail the
    # cycle instead of training on a trickle. Zero accepted always fails.
    min_accepted_share: float = Field(default=0.0, ge=0, le=1)
    # Examples in flight at once (each waits for the teacher's own max_concurrency slots);
    # bounds memory and open tasks for very large batches.
    chunk_size: int = Field(default=256, ge=1)
