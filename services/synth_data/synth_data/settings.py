"""Synth-data settings (env prefix SYNTH_DATA_); the task spec carries the per-task knobs."""

from __future__ import annotations

from typing import Annotated, Any

from pydantic import Field, field_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

from shared.llm.hosts import parse_host_list

NAME = "synth-data"


class SynthDataSettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="SYNTH_DATA_", extra="ignore")

    # Deprecated: the platform's DISTILLERY_ALLOWED_TEACHER_HOSTS is the operator's switch for
    # every service that calls a teacher. Kept, and enforced in addition to it (a host must pass
    # every non-empty list), so a deployment that set only this one keeps its restriction.
    # Comma-separated or a JSON list; entries `host` or `host:port` as in shared/llm/hosts.py.
    allowed_teacher_hosts: Annotated[list[str], NoDecode] = Field(default_factory=list)

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

    @field_validator("allowed_teacher_hosts", mode="before")
    @classmethod
    def _host_list(cls, value: Any) -> list[str]:
        return parse_host_list(value)
