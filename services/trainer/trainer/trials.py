"""One trial, trained in this process or through a launcher (multi-GPU), to a TrialOutcome.

Either way the trial folder ends with adapter/ when the trial completed, and the returned
plan and dropped-row count describe what ran.
"""

from __future__ import annotations

import json
import os
import shlex
import shutil
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from .launch import WORKER_PID_ENV
from .ml import Hyperparameters, LoraSFTRecipe, RecipeOptions, TrialOutcome

Emit = Callable[[dict[str, Any]], None]
ShouldPrune = Callable[[int, float], bool]


def finite(outcome: TrialOutcome) -> bool:
    import math

    values = [loss for _, loss in outcome.train_losses[-1:]]
    if outcome.validation_loss is not None:
        values.append(outcome.validation_loss)
    return all(math.isfinite(v) for v in values)


def state_of(outcome: TrialOutcome) -> str:
    if outcome.pruned:
        return "pruned"
    # Diverged: a NaN loss is a result to record, not a crash to retry.
    return "complete" if finite(outcome) else "failed"


def in_process(
    job: dict[str, Any], hp: Hyperparameters, trial_dir: Path, emit: Emit, prune: ShouldPrune
) -> tuple[TrialOutcome, dict[str, Any], int]:
    recipe = LoraSFTRecipe(
        Path(job["model_dir"]),
        job["train_rows"],
        job["validation_rows"],
        RecipeOptions(**job["options"]),
        hp,
        trial_dir,
        trial=job["trial"],
        emit=emit,
        should_prune=prune,
    )
    try:
        recipe.setup()
        outcome = recipe.train()
        if state_of(outcome) == "complete":
            staging = trial_dir / "adapter.part"
            shutil.rmtree(staging, ignore_errors=True)
            recipe.save(staging)
            shutil.rmtree(trial_dir / "adapter", ignore_errors=True)
            staging.rename(trial_dir / "adapter")
        return outcome, recipe.plan, recipe.dropped
    finally:
        recipe.cleanup()


def launched(
    job: dict[str, Any], hp: Hyperparameters, trial_dir: Path, emit: Emit, prune: ShouldPrune
) -> tuple[TrialOutcome, dict[str, Any], int]:
    """`<launcher> -m trainer.launch trial.json`; a pruned trial's launch is terminated."""
    trial_dir.mkdir(parents=True, exist_ok=True)
    config = trial_dir / "launch.json"
    keys = ("model_dir", "train", "validation", "options", "trial")
    config.write_text(
        json.dumps(
            {
                **{k: job[k] for k in keys},
                "hyperparameters": hp.as_dict(),
                "trial_dir": str(trial_dir),
            }
        )
    )
    launcher = shlex.split(job["launcher"]) or [sys.executable]
    proc = subprocess.Popen(
        [*launcher, "-m", "trainer.launch", str(config)],
        stdout=subprocess.PIPE,
        text=True,
        env={**os.environ, WORKER_PID_ENV: str(os.getpid())},
    )
    outcome, evals, losses, result = TrialOutcome(), [], [], None
    assert proc.stdout is not None
    for line in proc.stdout:
        try:
            message = json.loads(line)
        except json.JSONDecodeError:
            continue
        if message.get("kind") == "outcome":
            result = message
            continue
        emit(message)
        if message.get("kind") == "step":
            losses.append((message["step"], message["loss"]))
        if message.get("kind") == "eval":
            evals.append((message["step"], message["loss"]))
            if prune(message["step"], message["loss"]):
                proc.terminate()
                outcome = TrialOutcome(
                    steps=message["step"], eval_losses=evals, train_losses=losses
                )
                outcome.pruned = True
    code = proc.wait()
    if outcome.pruned:
        shutil.rmtree(trial_dir / "adapter", ignore_errors=True)
        return outcome, {}, 0
    if result is None:
        raise RuntimeError(f"launched trial exited with status {code} before its outcome")
    outcome = TrialOutcome(**result["outcome"])
    if state_of(outcome) != "complete":
        shutil.rmtree(trial_dir / "adapter", ignore_errors=True)
    return outcome, result["plan"], result["dropped"]
