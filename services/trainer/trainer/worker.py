"""The worker-process entry, `trainer.worker:train`, and its contract both ways.

The service calls `run.process("trainer.worker:train", TrainPayload(...), TrainResult)`; the
two models below are the whole contract, validated on each side (this module imports nothing
heavy at the top, so the service can import them). Files in, files out: the service has
already put the base model and the dataset on local disk and restored the run folder; this
process trains and writes adapters and trial results under `run_dir`. Everything it learns
on the way goes out as progress messages (`step`, `eval`, `checkpoint`, `trial_started`,
`trial`), which the service turns into events, database rows and artifact-store copies.

Run folder: run_dir/trial-<n>/checkpoint-<step>/ (resume state), run_dir/trial-<n>/adapter/
(the trial's final adapter) and run_dir/trial-<n>/result.json, written last: a trial with a
result is finished and never trained again.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Callable
from dataclasses import asdict
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from shared.bus import PermanentError
from shared.tasks.sections import Replay, SearchSpace

from .data import DatasetError, read_rows
from .domain import TrialRecord, best_trial
from .ml import Hyperparameters, RecipeOptions

RESULT = "result.json"
PARAMS = "params.json"


class Contract(BaseModel):
    # A diverged trial's NaN loss is a result to keep, not a null that fails validation.
    model_config = ConfigDict(frozen=True, extra="forbid", ser_json_inf_nan="constants")


class Search(Contract):
    search: SearchSpace
    trials: int = Field(ge=1)
    seed: int


class TrainPayload(Contract):
    run_dir: Path
    model_dir: Path
    train: Path
    validation: Path
    options: RecipeOptions
    training: Search
    replay: Replay = Replay()
    finished: list[TrialRecord] = Field(
        default_factory=list, description="trials the database records as finished"
    )
    torch_threads: int | None = None
    launcher: str | None = None


class TrainResult(Contract):
    best: int
    adapter_dir: Path
    trials: list[TrialRecord]
    examples: dict[str, int]
    plan: dict[str, Any]
    hardware: dict[str, Any]
    memory: dict[str, float]
    wall_seconds: float


def _finished_locally(run_dir: Path) -> dict[int, TrialRecord]:
    found = {}
    for path in run_dir.glob(f"trial-*/{RESULT}"):
        record = TrialRecord.from_dict(json.loads(path.read_text()))
        found[record.number] = record
    return found


def _interrupted(run_dir: Path) -> dict[str, Any] | None:
    """The trial a killed worker was training: started (params.json) but without a result."""
    for path in sorted(run_dir.glob(f"trial-*/{PARAMS}")):
        if not (path.parent / RESULT).exists():
            return json.loads(path.read_text())
    return None


def write_json(path: Path, data: dict[str, Any]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(json.dumps(data, sort_keys=True))
    os.replace(tmp, path)


def _rows(path: Path) -> list[dict[str, Any]]:
    try:
        return list(read_rows(path))
    except DatasetError as exc:
        raise PermanentError(f"dataset unusable: {exc}") from None


def train(payload: TrainPayload, progress: Callable[[dict[str, Any]], None]) -> TrainResult:
    from . import replay
    from .plan import hardware, peak_memory
    from .search import search
    from .trials import in_process, launched, state_of

    started = time.perf_counter()
    if payload.torch_threads:
        import torch

        torch.set_num_threads(payload.torch_threads)
    run_dir = payload.run_dir
    task_rows = _rows(payload.train)
    # Before any trial, so every trial (and a resumed one) trains on the same replay rows.
    replayed, replay_info = replay.for_run(
        run_dir,
        payload.model_dir,
        (
            replay.count(payload.replay, len(task_rows)),
            replay.count(payload.replay, len(task_rows), payload.replay.text_share),
        ),
        payload.training.seed,
        payload.replay,
    )
    if replay_info["asked"]:
        progress({"kind": "replay", **replay_info})
    # What one trial needs, as plain JSON: a launched trial reads it back from launch.json.
    job = {
        "model_dir": str(payload.model_dir),
        "train": str(payload.train),
        "validation": str(payload.validation),
        "options": asdict(payload.options),
        "launcher": payload.launcher,
        "train_rows": task_rows + replayed,
        "validation_rows": _rows(payload.validation),
    }
    finished = {r.number: r for r in payload.finished}
    for number, record in _finished_locally(run_dir).items():
        if number not in finished:
            # Finished here but never recorded (killed right after): record it now.
            adapter = _adapter(run_dir / f"trial-{number}")
            progress({"kind": "trial", "record": record.as_dict(), "adapter": adapter})
            finished[number] = record
    dropped: dict[str, int] = {}
    plan: dict[str, Any] = {}

    def run_trial(number: int, params: dict[str, Any], should_prune) -> TrialRecord:
        hp = Hyperparameters(**params)
        trial_dir = run_dir / f"trial-{number}"
        write_json(trial_dir / PARAMS, {"number": number, "params": hp.as_dict()})
        progress({"kind": "trial_started", "trial": number, "params": hp.as_dict()})
        run = launched if payload.launcher else in_process
        outcome, trial_plan, trial_dropped = run(
            {**job, "trial": number}, hp, trial_dir, progress, should_prune
        )
        plan.update(trial_plan)
        dropped["dropped_over_max_seq_len"] = trial_dropped
        record = TrialRecord(
            number=number,
            state=state_of(outcome),
            params=hp.as_dict(),
            validation_loss=outcome.validation_loss,
            eval_losses=[list(x) for x in outcome.eval_losses],
            train_losses=[list(x) for x in outcome.train_losses],
            steps=outcome.steps,
            total_steps=outcome.total_steps,
            resumed_from_step=outcome.resumed_from_step,
            tokens_per_second=outcome.tokens_per_second,
            seconds=outcome.seconds,
        )
        write_json(trial_dir / RESULT, record.as_dict())
        progress({"kind": "trial", "record": record.as_dict(), "adapter": _adapter(trial_dir)})
        return record

    records = search(
        payload.training.search.model_dump(),
        payload.training.trials,
        payload.training.seed,
        list(finished.values()),
        run_trial,
        interrupted=_interrupted(run_dir),
    )
    best = best_trial(records)
    if best is None:
        raise PermanentError(
            f"no trial finished with a finite loss ({len(records)} trials): "
            "lower the learning rate range or check the dataset"
        )
    return TrainResult(
        best=best.number,
        adapter_dir=run_dir / f"trial-{best.number}" / "adapter",
        trials=records,
        examples={
            "train": len(task_rows),
            "validation": len(job["validation_rows"]),
            "replay": len(replayed),
            **dropped,
        },
        plan=plan,
        hardware=hardware(),
        memory=peak_memory(),
        wall_seconds=time.perf_counter() - started,
    )


def _adapter(trial_dir: Path) -> str | None:
    adapter = trial_dir / "adapter"
    return str(adapter) if adapter.exists() else None
