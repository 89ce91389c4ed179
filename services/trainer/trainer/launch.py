"""One trial as a program of its own, so a launcher can run it on several GPUs:

    accelerate launch --num_processes 4 -m trainer.launch trial.json

The worker does this itself when TRAINER_LAUNCHER is set (e.g. "accelerate launch
--num_processes 4"): it writes trial.json, starts `<launcher> -m trainer.launch trial.json`,
forwards rank 0's JSON lines as progress, and stops the launch when optuna prunes the trial.
Every rank trains (the HF Trainer wraps the model in DDP); rank 0 alone writes checkpoint
markers, the adapter and the outcome. Each rank exits if the worker that launched it dies.
"""

from __future__ import annotations

import json
import os
import shutil
import sys
import threading
import time
from dataclasses import asdict
from pathlib import Path
from typing import Any

WORKER_PID_ENV = "DISTILLERY_TRAINER_WORKER_PID"


def _watch(pid: int) -> None:
    while True:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            os._exit(70)
        time.sleep(1.0)


def main(path: str) -> int:
    from accelerate import PartialState

    from .data import read_rows
    from .ml import Hyperparameters, LoraSFTRecipe, RecipeOptions

    if os.environ.get(WORKER_PID_ENV):
        threading.Thread(
            target=_watch, args=(int(os.environ[WORKER_PID_ENV]),), daemon=True
        ).start()
    out = os.fdopen(os.dup(1), "w", buffering=1)
    os.dup2(2, 1)  # libraries print to stdout; keep it for our JSON lines
    config = json.loads(Path(path).read_text())
    main_process = PartialState().is_main_process

    def emit(message: dict[str, Any]) -> None:
        if main_process:
            out.write(json.dumps(message) + "\n")

    trial_dir = Path(config["trial_dir"])
    recipe = LoraSFTRecipe(
        Path(config["model_dir"]),
        list(read_rows(Path(config["train"]))),
        list(read_rows(Path(config["validation"]))),
        RecipeOptions(**config["options"]),
        Hyperparameters(**config["hyperparameters"]),
        trial_dir,
        trial=config["trial"],
        emit=emit,
    )
    recipe.setup()
    outcome = recipe.train()
    if main_process:
        staging = trial_dir / "adapter.part"
        shutil.rmtree(staging, ignore_errors=True)
        recipe.save(staging)
        shutil.rmtree(trial_dir / "adapter", ignore_errors=True)
        staging.rename(trial_dir / "adapter")
        emit(
            {
                "kind": "outcome",
                "outcome": asdict(outcome),
                "plan": recipe.plan,
                "dropped": recipe.dropped,
            }
        )
    recipe.cleanup()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1]))
