"""Trainer callbacks: progress out of the worker, finished-checkpoint markers, pruning.

Built by a factory because TrainerCallback lives in transformers, which is imported lazily.
"""

from __future__ import annotations

import time
from functools import cache
from pathlib import Path
from typing import Any

from .checkpoint import mark_complete


@cache
def _classes() -> tuple[type, type]:
    from transformers import TrainerCallback

    class Progress(TrainerCallback):
        """Keeps the trial's curves and sends one message per optimizer step."""

        def __init__(self, recipe: Any) -> None:
            from .ml import TrialOutcome

            self.recipe = recipe
            self.outcome = TrialOutcome()
            self.training = False

        def on_train_begin(self, args, state, control, **kwargs):
            self.training = True
            self.started = time.perf_counter()
            self.tokens_at_start = state.num_input_tokens_seen
            self.outcome.resumed_from_step = state.global_step
            self.outcome.total_steps = state.max_steps
            # A resumed run's curves start in the checkpoint's history.
            for entry in state.log_history:
                if "loss" in entry:
                    self.outcome.train_losses.append((entry["step"], float(entry["loss"])))
                if "eval_loss" in entry:
                    self._evaluated(entry["step"], float(entry["eval_loss"]), control, replay=True)

        def on_log(self, args, state, control, logs=None, **kwargs):
            if not self.training or not logs or "loss" not in logs:
                return
            outcome, step = self.outcome, state.global_step
            if outcome.first_step is None:
                outcome.first_step = step
            outcome.steps = step
            outcome.train_losses.append((step, float(logs["loss"])))
            outcome.tokens = state.num_input_tokens_seen - self.tokens_at_start
            elapsed = time.perf_counter() - self.started
            done = step - outcome.resumed_from_step
            rate = outcome.tokens / elapsed if elapsed > 0 else None
            eta = (state.max_steps - step) * elapsed / done if done > 0 else None
            if state.is_world_process_zero:
                self.recipe.emit(
                    {
                        "kind": "step",
                        "trial": self.recipe.trial,
                        "step": step,
                        "total_steps": state.max_steps,
                        "loss": float(logs["loss"]),
                        "tokens_per_second": rate,
                        "eta_seconds": eta,
                    }
                )

        def on_evaluate(self, args, state, control, metrics=None, **kwargs):
            if self.training and metrics and "eval_loss" in metrics:
                self._evaluated(state.global_step, float(metrics["eval_loss"]), control)

        def _evaluated(self, step: int, loss: float, control, replay: bool = False) -> None:
            self.outcome.eval_losses.append((step, loss))
            if not replay:
                self.recipe.emit(
                    {"kind": "eval", "trial": self.recipe.trial, "step": step, "loss": loss}
                )
            if self.recipe.should_prune(step, loss):
                self.outcome.pruned = True
                control.should_training_stop = True

        def on_train_end(self, args, state, control, **kwargs):
            self.training = False
            self.outcome.steps = state.global_step

    class Checkpoints(TrainerCallback):
        """Marks a checkpoint finished (the Trainer has written every file) and reports it."""

        def __init__(self, recipe: Any) -> None:
            self.recipe = recipe

        def on_save(self, args, state, control, **kwargs):
            if not state.is_world_process_zero:
                return
            folder = Path(args.output_dir) / f"checkpoint-{state.global_step}"
            info = {"trial": self.recipe.trial, "step": state.global_step}
            mark_complete(folder, info)
            self.recipe.emit({"kind": "checkpoint", **info, "path": str(folder)})

    return Progress, Checkpoints


def make_callbacks(recipe: Any) -> list[Any]:
    """[progress, checkpoints]; the progress callback comes first and holds the outcome."""
    progress, checkpoints = _classes()
    return [progress(recipe), checkpoints(recipe)]
