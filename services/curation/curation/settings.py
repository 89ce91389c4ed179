"""Curation settings (env prefix CURATION_); the task spec carries the per-task thresholds."""

from __future__ import annotations

from pydantic import Field, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

NAME = "curation"


class CurationSettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="CURATION_", extra="ignore")

    # MinHash: changing any of these changes which rows count as near duplicates, so each is
    # recorded in the manifest's thresholds.
    num_perm: int = Field(default=128, ge=16, le=1024)
    # Word 3-grams plus character 3-grams, digits weighted 4: chosen on bench/dedup.py (see
    # curation.dedup for why); 0 turns a kind of shingle off.
    shingle_words: int = Field(default=3, ge=0, le=8, description="words per word shingle")
    shingle_chars: int = Field(default=3, ge=0, le=8, description="characters per char shingle")
    detail_weight: int = Field(default=4, ge=1, le=16, description="weight of digit shingles")
    minhash_seed: int = 1

    judge_min_score: float = Field(
        default=0.6, ge=0, le=1, description="LLM-judge score (0..1) a row needs when enabled"
    )
    judge_max_rows: int = Field(
        default=5000, ge=1, description="refuse to judge bigger batches: the teacher costs money"
    )
    # "module:attribute" scrubbers registered on top of the built-in ones (see shared.text.pii).
    extra_scrubbers: list[str] = Field(default_factory=list)

    @model_validator(mode="after")
    def _some_shingles(self) -> CurationSettings:
        if not (self.shingle_words or self.shingle_chars):
            raise ValueError("shingle_words and shingle_chars cannot both be 0")
        return self
