"""feedback-collector settings (env prefix FEEDBACK_); built by main.create_app, never at import."""

from __future__ import annotations

from pydantic import Field, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from shared.tasks.sections import Monitoring

NAME = "feedback-collector"


class FeedbackSettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="FEEDBACK_", extra="ignore")

    # --- ingest ---
    batch_size: int = Field(
        default=512, ge=1, le=10_000, description="events per ingest transaction, at most"
    )
    poll_s: float = Field(default=1.0, gt=0, description="an idle fetch's wait")
    # --- retention ---
    trace_retention_days: float = Field(
        default=30.0, gt=0, description="traces (and their feedback) older than this are deleted"
    )
    pending_feedback_days: float = Field(
        default=7.0,
        gt=0,
        description="feedback whose trace has not arrived after this long is given up on "
        "and recorded as a rejected contribution (reason: trace_missing)",
    )
    sweep_every_s: float = Field(default=300.0, gt=0, description="how often retention runs")
    metrics_every_s: float = Field(
        default=5.0, gt=0, description="how often unfinished rollouts' figures are sent"
    )
    # --- poisoning guards ---
    max_per_user: int = Field(
        default=20, ge=1, description="corrections one user may contribute per task and build"
    )
    max_per_key: int = Field(
        default=200, ge=1, description="corrections one API key may contribute per task and build"
    )
    min_agreeing_users: int = Field(
        default=2,
        ge=1,
        description="distinct users that must give the same correction for it to be trusted "
        "without the teacher's agreement",
    )
    max_correction_ratio: float = Field(
        default=8.0,
        gt=1,
        description="outlier filter: a correction longer than this many times the answer it "
        "corrects (or shorter than its inverse) is rejected",
    )
    # --- feedback datasets and the retrain policy (datasets.py, policy.py) ---
    build_every_s: float = Field(
        default=300.0, gt=0, description="how often feedback becomes examples and maybe a cycle"
    )
    min_new_examples: int = Field(
        default=200, ge=1, description="new trusted examples since the last cycle that start one"
    )
    cooldown_s: float = Field(
        default=86_400.0, ge=0, description="no cycle starts this soon after the task's last"
    )
    max_cycles: int = Field(default=4, ge=1, description="cycles started per budget window")
    max_cycle_age_days: float = Field(
        default=7.0,
        gt=0,
        description="a cycle with no end heard of (no cycle.failed, no full or rolled-back "
        "rollout) stops counting as in flight after this",
    )
    budget_window_days: float = Field(default=30.0, gt=0)
    relabel_batch: int = Field(
        default=256, ge=1, le=1024, description="inputs per relabel request to synth-data"
    )
    relabel_per_day: int = Field(
        default=1000, ge=1, description="inputs a task may send to the teacher per 24 h"
    )
    relabel_attempts: int = Field(
        default=3, ge=1, le=20, description="times an unanswered input is asked, at most"
    )
    relabel_retry_hours: float = Field(
        default=6.0, gt=0, description="an input asked this long ago with no answer is asked again"
    )
    retrain_every_days: float | None = Field(
        default=None, gt=0, description="a scheduled cycle per task this often; null: none"
    )
    # --- the drift watch (watch.py, drift.py) ---
    drift_every_s: float = Field(default=600.0, gt=0, description="how often drift is tested")
    drift_window: int = Field(
        default=200, ge=2, description="input drift: the latest live requests compared"
    )
    drift_min_window: int = Field(
        default=50, ge=2, description="input drift: fewer live requests than this are not tested"
    )
    drift_reference_rows: int = Field(
        default=300, ge=2, description="input drift: rows of the reference dataset's train split"
    )
    drift_alpha: float = Field(
        default=0.01, gt=0, lt=1, description="input drift: false-alarm probability per test"
    )
    drift_permutations: int = Field(default=200, ge=20)
    quality_window: int = Field(
        default=5000, ge=10, description="quality drift: the latest live requests read"
    )
    quality_baseline: float = Field(
        default=0.05,
        gt=0,
        lt=1,
        description="quality drift: the expected share of bad answers "
        "(error, negative rating or escalation)",
    )
    quality_shifted: float = Field(
        default=0.15, gt=0, lt=1, description="quality drift: the share the CUSUM is tuned to catch"
    )
    quality_false_alarm_run: float = Field(
        default=10_000.0, gt=1, description="quality drift: mean live requests between false alarms"
    )

    @model_validator(mode="after")
    def _consistent(self) -> FeedbackSettings:
        # Either mistake would leave a drift test that never runs, silently.
        if self.quality_baseline >= self.quality_shifted:
            raise ValueError("FEEDBACK_QUALITY_BASELINE must be below FEEDBACK_QUALITY_SHIFTED")
        if self.drift_min_window > self.drift_window:
            raise ValueError("FEEDBACK_DRIFT_MIN_WINDOW must not exceed FEEDBACK_DRIFT_WINDOW")
        return self

    def for_task(self, monitoring: Monitoring) -> FeedbackSettings:
        """These settings with the task spec's `monitoring` over them: the spec decides its
        windows, thresholds, false-alarm budget and retrain policy; what it leaves unset
        stays the operator's default. Raises ValueError for a combination that cannot work
        (a baseline at or above the shift), naming both."""
        m = monitoring
        spec = {
            "drift_window": m.drift_window,
            "drift_alpha": m.drift_alpha,
            "quality_baseline": m.quality_baseline,
            "quality_shifted": m.quality_shifted,
            "quality_false_alarm_run": m.quality_false_alarm_run,
            "retrain_every_days": m.retrain_every_days,
            "cooldown_s": None if m.cooldown_hours is None else m.cooldown_hours * 3600,
            "min_new_examples": m.min_new_examples,
            "max_cycles": m.max_cycles,
            "budget_window_days": m.budget_window_days,
        }
        chosen = {k: v for k, v in spec.items() if v is not None}
        if not chosen:
            return self
        merged = self.model_dump() | chosen
        if m.drift_window is not None:
            # A smaller window than the default minimum is the spec's choice, not a mistake.
            merged["drift_min_window"] = min(merged["drift_min_window"], m.drift_window)
        if merged["quality_baseline"] >= merged["quality_shifted"]:
            raise ValueError(
                f"monitoring: quality_baseline {merged['quality_baseline']} must be below "
                f"quality_shifted {merged['quality_shifted']} (the task spec's, else "
                "FEEDBACK_QUALITY_*): the quality watch could never alarm"
            )
        return FeedbackSettings.model_validate(merged)
