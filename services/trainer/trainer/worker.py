"""The worker-process entry: `run_in_worker("trainer.worker:train", payload)`.

Files in, files out: the service has already put the base model and the dataset on local disk
and restored the run folder; this process trains and writes adapters and trial results under
`run_dir`. Everything it learns on the way goes out as progress messages
(`step`, `eval`, `checkpoint`, `trial_started`, `trial`), which the service turns into
events, database rows and artifact-store copies.

Run folder: run_dir/trial-<n>/checkpoint-<step>/ (resume state), run_dir/trial-<n>/adapter/
(the trial's final adapter) and run_dir/trial-<n>/result.json, written last: a trial with a
result is finished and never trained again.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from shared.bus import PermanentError
from trainer.data import DatasetError, read_rows
from trainer.domain import TrialRecord, best_trial

RESULT = "result.json"
PARAMS = "params.json"


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


def _rows(path: str) -> list[dict[str, Any]]:
    try:
        return list(read_rows(Path(path)))
    except DatasetError as exc:
        raise PermanentError(f"dataset unusable: {exc}") from None


def train(payload: dict[str, Any], progress: Callable[[dict[str, Any]], None]) -> dict[str, Any]:
    from trainer.ml import Hyperparameters
    from trainer.plan import hardware, peak_memory
    from trainer.search import search
    from trainer.trials import in_process, launched, state_of

    started = time.perf_counter()
    if payload.get("torch_threads"):
        import torch

        torch.set_num_threads(int(payload["torch_threads"]))
    run_dir = Path(payload["run_dir"])
    job = {
        **payload,
        "train_rows": _rows(payload["train"]),
        "validation_rows": _rows(payload["validation"]),
    }
    finished = {r.number: r for r in map(TrialRecord.from_dict, payload.get("finished", []))}
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
        run = launched if payload.get("launcher") else in_process
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

    training = payload["training"]
    records = search(
        training["search"],
        training["trials"],
        training["seed"],
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
    return {
        "best": best.number,
        "adapter_dir": str(run_dir / f"trial-{best.number}" / "adapter"),
        "trials": [r.as_dict() for r in records],
        "examples": {
            "train": len(job["train_rows"]),
            "validation": len(job["validation_rows"]),
            **dropped,
        },
        "plan": plan,
        "hardware": hardware(),
        "memory": peak_memory(),
        "wall_seconds": time.perf_counter() - started,
    }


def _adapter(trial_dir: Path) -> str | None:
    adapter = trial_dir / "adapter"
    return str(adapter) if adapter.exists() else None
