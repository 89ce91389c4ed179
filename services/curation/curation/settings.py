"""Curation settings (env prefix CURATION_); the task spec carries the per-task thresholds."""

from __future__ import annotations

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

NAME = "curation"


class CurationSettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="CURATION_", extra="ignore")

    # MinHash: changing any of these changes which rows count as near duplicates, so each is
    # recorded in the manifest's thresholds.
    num_perm: int = Field(default=128, ge=16, le=1024)
    shingle_words: int = Field(default=1, ge=1, le=8, description="words per MinHash shingle")
    minhash_seed: int = 1

    judge_min_score: float = Field(
        default=0.6, ge=0, le=1, description="LLM-judge score (0..1) a row needs when enabled"
    )
    judge_max_rows: int = Field(
        default=5000, ge=1, description="refuse to judge bigger batches: the teacher costs money"
    )
    # "module:attribute" scrubbers registered on top of the built-in ones (see curation.pii).
    extra_scrubbers: list[str] = Field(default_factory=list)
