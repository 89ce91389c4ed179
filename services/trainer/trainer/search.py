"""Hyper-parameter search with optuna: TPE over rank, alpha, learning rate and epochs, and a
median pruner fed with each trial's intermediate validation losses.

The study lives in memory and is rebuilt on every (re)start from the trials already finished
(the trainer_trials table and the run folder are the record, not optuna's own storage, so the
service's schema stays one Alembic history). A resumed run therefore never repeats a finished
trial, and the interrupted trial is asked again with the same parameters. The sampler is
re-seeded per trial number, so the same finished trials always lead to the same next
parameters, whether or not the process died in between.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from .domain import TrialRecord, baseline_params

# run_trial(number, params, should_prune) -> the finished trial's record
RunTrial = Callable[[int, dict[str, Any], Callable[[int, float], bool]], TrialRecord]


def distributions(space: dict[str, Any]) -> dict[str, Any]:
    from optuna.distributions import CategoricalDistribution, FloatDistribution

    lr = space["learning_rate"]
    return {
        "rank": CategoricalDistribution(list(space["rank"])),
        "alpha": CategoricalDistribution(list(space["alpha"])),
        "learning_rate": FloatDistribution(lr["low"], lr["high"], log=True),
        "epochs": CategoricalDistribution(list(space["epochs"])),
    }


def _frozen(record: TrialRecord, dists: dict[str, Any]):
    from optuna.trial import TrialState, create_trial

    state = {
        "complete": TrialState.COMPLETE,
        "pruned": TrialState.PRUNED,
    }.get(record.state, TrialState.FAIL)
    value = record.score
    if state == TrialState.COMPLETE and value is None:
        state = TrialState.FAIL
    return create_trial(
        state=state,
        value=value if state == TrialState.COMPLETE else None,
        params=record.params,
        distributions=dists,
        intermediate_values={int(step): float(loss) for step, loss in record.eval_losses},
    )


def search(
    space: dict[str, Any],
    n_trials: int,
    seed: int,
    finished: list[TrialRecord],
    run_trial: RunTrial,
    interrupted: dict[str, Any] | None = None,
) -> list[TrialRecord]:
    """Run the trials still missing; returns every trial's record, finished ones included."""
    import optuna
    from optuna.pruners import MedianPruner
    from optuna.samplers import TPESampler

    from shared.tasks.sections import SearchSpace

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    dists = distributions(space)
    # Prune only against two finished trials, and never on a trial's first evaluation
    # (should_prune below): an early loss says little about where a trial ends.
    study = optuna.create_study(direction="minimize", pruner=MedianPruner(n_startup_trials=2))
    records = {r.number: r for r in finished}
    for number in sorted(records):
        study.add_trial(_frozen(records[number], dists))
    while len(records) < n_trials:
        number = len(study.trials)
        study.sampler = TPESampler(seed=seed * 1009 + number, n_startup_trials=2)
        if number == 0:
            study.enqueue_trial(baseline_params(SearchSpace.model_validate(space)))
        elif interrupted is not None and interrupted.get("number") == number:
            study.enqueue_trial(interrupted["params"])
        trial = study.ask(dists)

        reported: set[int] = set()

        def should_prune(step: int, loss: float, trial=trial, reported=reported) -> bool:
            if step not in reported:
                trial.report(loss, step)
                reported.add(step)
            return len(reported) > 1 and trial.should_prune()

        record = run_trial(trial.number, dict(trial.params), should_prune)
        records[record.number] = record
        if record.state == "complete" and record.score is not None:
            study.tell(trial, record.score)
        elif record.state == "pruned":
            study.tell(trial, state=optuna.trial.TrialState.PRUNED)
        else:
            study.tell(trial, state=optuna.trial.TrialState.FAIL)
    return [records[n] for n in sorted(records)]
