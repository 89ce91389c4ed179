"""Pure decisions of the trainer: run identity, refusals, progress throttling, the best trial,
and the training report. No faststream, sqlalchemy or torch here."""

from __future__ import annotations

import hashlib
import json
import math
import uuid
from collections.abc import Iterable, Mapping
from dataclasses import asdict, dataclass, field
from typing import Any

from shared.tasks.sections import SearchSpace
from shared.tasks.spec import TaskSpec

RUN_NS = uuid.UUID("6f1d7c1e-2a0b-4f43-9d5e-0b7f5d3c8a21")
REPORT_FORMAT = "distillery.training-report.v1"
FINISHED = ("complete", "pruned", "failed")


def run_id_for(dataset_event_id: uuid.UUID) -> uuid.UUID:
    """One run per dataset.published event: a redelivery is the same run, resumed."""
    return uuid.uuid5(RUN_NS, str(dataset_event_id))


def progress_event_id(run_id: uuid.UUID, trial: int, step: int) -> uuid.UUID:
    # Deterministic, so a resumed run re-reporting a step is dropped by the outbox.
    return uuid.uuid5(run_id, f"progress:{trial}:{step}")


def refusal(spec: TaskSpec) -> str | None:
    """Why this spec cannot be trained at all, or None."""
    if spec.student.base_model_ref is None:
        return (
            f"base model {spec.student.base_model!r} is not imported: run "
            f"`distillery models import --name {spec.student.base_model}` and apply the task again"
        )
    if spec.training.distillation == "gkd":
        return (
            "training.distillation 'gkd' is not supported yet (it needs the teacher as a local "
            "transformers model); use 'sft'"
        )
    return None


def base_model_refusal(spec: TaskSpec, manifest: Mapping[str, Any]) -> str | None:
    """Why the manifest behind `student.base_model_ref` cannot be trained on, or None.

    The trainer loads that manifest as the full base weights and records its sha as the new
    adapter's `base_model`. An adapter in its place holds only low-rank deltas for another
    base: loading it would fail on every delivery until the cycle ran out of retries (or pull
    in whatever base its config names), so it is refused before anything is fetched.
    """
    ref = spec.student.base_model_ref
    assert ref is not None  # refusal() comes first
    kind = manifest.get("kind")
    if kind == "model":
        return None
    where = f"student.base_model {spec.student.base_model!r} (sha256:{ref.sha256[:12]})"
    if kind == "adapter":
        trained_on = str(manifest.get("base_model") or "unknown")
        return (
            f"base model mismatch: {where} is an adapter trained on base "
            f"sha256:{trained_on[:12]}, not a base model; the trainer trains a new adapter on "
            "a base model: import the base (`distillery models import`) and name it in "
            "student.base_model"
        )
    return f"base model mismatch: {where} is a {kind!r} manifest, not a base model"


def prompt_block(text: str) -> dict[str, str]:
    """The student prompt as manifests name it (curation's dataset manifest, the adapter's)."""
    return {"text": text, "sha256": hashlib.sha256(text.encode()).hexdigest()}


def serving_extra(spec: TaskSpec) -> dict[str, Any]:
    """What the adapter manifest tells whoever serves it: the system prompt it was trained
    (and is evaluated) with, and the output schema its replies are decoded under, each with a
    sha256 so a server can check it renders the same prompt and compiles the same grammar."""
    schema = spec.output_schema
    canonical = json.dumps(schema, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return {
        "student_prompt": prompt_block(spec.student_prompt),
        "output_schema": None
        if schema is None
        else {"schema": schema, "sha256": hashlib.sha256(canonical.encode()).hexdigest()},
    }


def _shown(text: str | None) -> str:
    return "none" if text is None else repr(text if len(text) <= 120 else text[:117] + "...")


def dataset_prompt_refusal(spec: TaskSpec, manifest: Any) -> str | None:
    """Why a dataset whose manifest names another system prompt than the spec's student
    prompt must not be trained on (the adapter would be served with a prompt it never saw)."""
    want = prompt_block(spec.student_prompt)
    named = manifest.get("student_prompt") if isinstance(manifest, Mapping) else None
    if not isinstance(named, Mapping) or not isinstance(named.get("sha256"), str):
        return (
            "train/serve skew: the dataset manifest names no student prompt, so its rows may "
            f"carry any system prompt; the spec's is {_shown(want['text'])}. Curate it again"
        )
    if named["sha256"] != want["sha256"]:
        return (
            f"train/serve skew: the dataset was rendered with system prompt "
            f"sha256:{named['sha256'][:12]} ({_shown(named.get('text'))}), but the spec's "
            f"student prompt is sha256:{want['sha256'][:12]} ({_shown(want['text'])})"
        )
    return None


def rows_prompt_refusal(spec: TaskSpec, rows: Iterable[Mapping[str, Any]]) -> str | None:
    """The first curated chat row whose system message is not the student prompt, or None.

    The manifest is curation's word for it; the rows are what is actually trained."""
    for row in rows:
        first = row["messages"][0]
        is_system = isinstance(first, Mapping) and first.get("role") == "system"
        system = first.get("content") if is_system else None
        if system != spec.student_prompt:
            return (
                f"train/serve skew: row {str(row.get('id'))[:16]} has system prompt "
                f"{_shown(system)}, not the spec's student prompt {_shown(spec.student_prompt)}"
            )
    return None


def baseline_params(space: SearchSpace) -> dict[str, Any]:
    """The first trial: the first listed choices and the range's geometric middle."""
    lr = math.sqrt(space.learning_rate.low * space.learning_rate.high)
    return {
        "rank": space.rank[0],
        "alpha": space.alpha[0],
        "learning_rate": lr,
        "epochs": space.epochs[0],
    }


@dataclass
class ProgressThrottle:
    """Publishes the first and last step of a trial, and otherwise at most every interval."""

    interval_s: float
    _last: float | None = None

    def should_publish(self, step: int, total: int, now: float, first: bool) -> bool:
        if first or step >= total or self._last is None or now - self._last >= self.interval_s:
            self._last = now
            return True
        return False


@dataclass
class TrialRecord:
    number: int
    state: str  # running | complete | pruned | failed
    params: dict[str, Any]
    validation_loss: float | None = None
    eval_losses: list[list[float]] = field(default_factory=list)
    train_losses: list[list[float]] = field(default_factory=list)
    steps: int = 0
    total_steps: int = 0
    resumed_from_step: int = 0
    tokens_per_second: float | None = None
    seconds: float | None = None

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> TrialRecord:
        known = {k: data[k] for k in cls.__dataclass_fields__ if k in data}
        return cls(**known)

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)

    @property
    def finished(self) -> bool:
        return self.state in FINISHED

    @property
    def ranked_by(self) -> str:
        return "validation_loss" if self.validation_loss is not None else "train_loss"

    @property
    def score(self) -> float | None:
        if self.validation_loss is not None:
            value = self.validation_loss
        elif self.train_losses:
            value = self.train_losses[-1][1]
        else:
            return None
        return value if math.isfinite(value) else None


def best_trial(trials: list[TrialRecord]) -> TrialRecord | None:
    """Lowest final loss among completed trials; ties go to the earlier trial.

    The loss is the validation loss; a dataset without validation rows is ranked by the final
    training loss instead (the report says which, under `ranked_by`).
    """
    done = [t for t in trials if t.state == "complete" and t.score is not None]
    return min(done, key=lambda t: (t.score, t.number)) if done else None


def training_report(
    *,
    run_id: uuid.UUID,
    cycle_id: uuid.UUID | None,
    task_name: str,
    task_version: int,
    dataset_version: str,
    base_model_sha256: str,
    best: TrialRecord,
    trials: list[TrialRecord],
    worker: dict[str, Any],
) -> dict[str, Any]:
    return {
        "format": REPORT_FORMAT,
        "run_id": str(run_id),
        "cycle_id": str(cycle_id) if cycle_id else None,
        "task": {"name": task_name, "version": task_version},
        "dataset_version": dataset_version,
        "base_model": base_model_sha256,
        "best_trial": best.number,
        "hyperparameters": best.params,
        "validation_loss": best.validation_loss,
        "ranked_by": best.ranked_by,
        "loss_curve": best.train_losses,
        "validation_curve": best.eval_losses,
        "tokens_per_second": best.tokens_per_second,
        "trials": [t.as_dict() for t in sorted(trials, key=lambda t: t.number)],
        "examples": worker.get("examples", {}),
        "plan": worker.get("plan", {}),
        "hardware": worker.get("hardware", {}),
        "memory": worker.get("memory", {}),
        "wall_seconds": worker.get("wall_seconds"),
    }
