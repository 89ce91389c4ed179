"""Pure decisions of the trainer: run identity, refusals, throttling, the best trial, search."""

from __future__ import annotations

import hashlib
import json
import math
import uuid

from shared.events.base import ArtifactRef
from tests.fixtures.datasets import INSTRUCTIONS, make_spec, triage_rows
from trainer.domain import (
    ProgressThrottle,
    TrialRecord,
    base_model_refusal,
    baseline_params,
    best_trial,
    dataset_prompt_refusal,
    progress_event_id,
    refusal,
    rows_prompt_refusal,
    run_id_for,
    serving_extra,
)
from trainer.search import search

REF = ArtifactRef(uri="file:///x", sha256="a" * 64, size_bytes=1)
SPACE = {
    "rank": [4, 8],
    "alpha": [8, 16],
    "learning_rate": {"low": 1e-4, "high": 1e-3},
    "epochs": [1, 2],
}


def test_a_redelivered_event_is_the_same_run_and_reports_the_same_progress_ids():
    event_id = uuid.uuid4()
    assert run_id_for(event_id) == run_id_for(event_id) != run_id_for(uuid.uuid4())
    run = run_id_for(event_id)
    assert (
        progress_event_id(run, 0, 5) == progress_event_id(run, 0, 5) != progress_event_id(run, 1, 5)
    )


def test_refusals_name_the_fix():
    missing = make_spec(golden_set=REF, base_model_ref=None)
    assert "distillery models import --name tiny-llama" in refusal(missing)
    gkd = make_spec(golden_set=REF, base_model_ref=REF, training={"distillation": "gkd"})
    assert "not supported yet" in refusal(gkd)
    assert refusal(make_spec(golden_set=REF, base_model_ref=REF)) is None


def test_only_a_model_manifest_is_a_base_and_an_adapter_names_the_base_it_needs():
    spec = make_spec(golden_set=REF, base_model_ref=REF)
    assert base_model_refusal(spec, {"kind": "model", "name": "tiny-llama"}) is None
    adapter = {"kind": "adapter", "name": "other", "base_model": "b" * 64}
    reason = base_model_refusal(spec, adapter)
    assert reason is not None and reason.startswith("base model mismatch")
    assert "'tiny-llama' (sha256:aaaaaaaaaaaa) is an adapter trained on base" in reason
    assert "sha256:bbbbbbbbbbbb" in reason
    assert "not a base model" in (base_model_refusal(spec, {"kind": "dataset"}) or "")


def sha(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


def test_the_adapter_manifest_carries_the_prompt_and_schema_it_is_served_with():
    schema = {"type": "object", "properties": {"category": {"enum": ["billing", "other"]}}}
    spec = make_spec(golden_set=REF, base_model_ref=REF).model_copy(
        update={"output_schema": schema}
    )
    extra = serving_extra(spec)
    assert extra["student_prompt"] == {
        "text": spec.student_prompt,
        "sha256": sha(spec.student_prompt),
    }
    assert spec.student_prompt != spec.instructions
    canonical = json.dumps(schema, sort_keys=True, separators=(",", ":"))
    assert extra["output_schema"] == {"schema": schema, "sha256": sha(canonical)}
    plain = serving_extra(make_spec(golden_set=REF, base_model_ref=REF))
    assert plain["output_schema"] is None
    json.dumps(extra)  # it goes into a JSON manifest as it is


def test_a_dataset_rendered_with_another_prompt_is_refused():
    spec = make_spec(golden_set=REF, base_model_ref=REF)
    prompt = spec.student_prompt
    assert (
        dataset_prompt_refusal(spec, {"student_prompt": {"text": prompt, "sha256": sha(prompt)}})
        is None
    )
    teacher = {"student_prompt": {"text": INSTRUCTIONS, "sha256": sha(INSTRUCTIONS)}}
    reason = dataset_prompt_refusal(spec, teacher)
    assert reason.startswith("train/serve skew") and f"sha256:{sha(INSTRUCTIONS)[:12]}" in reason
    assert repr(prompt) in reason
    for unnamed in ({}, {"student_prompt": "x"}, [], None):
        assert "names no student prompt" in dataset_prompt_refusal(spec, unnamed)

    rows = triage_rows(3)  # rendered with the instructions, as before the student prompt
    assert "has system prompt 'You triage customer" in rows_prompt_refusal(spec, rows)
    for row in rows:
        row["messages"][0]["content"] = prompt
    assert rows_prompt_refusal(spec, rows) is None
    rows[2]["messages"] = rows[2]["messages"][1:]  # no system turn at all
    assert "has system prompt none" in rows_prompt_refusal(spec, rows)


def test_throttle_publishes_first_and_last_steps_and_then_by_interval():
    throttle = ProgressThrottle(interval_s=10)
    decisions = [
        throttle.should_publish(1, 100, now=0.0, first=True),
        throttle.should_publish(2, 100, now=1.0, first=False),
        throttle.should_publish(3, 100, now=10.5, first=False),
        throttle.should_publish(4, 100, now=11.0, first=False),
        throttle.should_publish(100, 100, now=12.0, first=False),
    ]
    assert decisions == [True, False, True, False, True]


def test_best_trial_is_the_lowest_finite_completed_validation_loss():
    trials = [
        TrialRecord(0, "complete", {}, validation_loss=1.5),
        TrialRecord(1, "pruned", {}, validation_loss=0.1),
        TrialRecord(2, "complete", {}, validation_loss=math.nan),
        TrialRecord(3, "complete", {}, validation_loss=1.2),
    ]
    assert best_trial(trials).number == 3
    assert best_trial(trials[1:3]) is None
    # Without validation rows, the final training loss ranks the trials.
    no_validation = TrialRecord(4, "complete", {}, train_losses=[[1, 2.0], [2, 0.7]])
    assert (no_validation.score, no_validation.ranked_by) == (0.7, "train_loss")
    assert best_trial([*trials, no_validation]).number == 4


def test_baseline_is_the_first_choices_and_the_geometric_middle_of_the_range():
    from shared.tasks.sections import SearchSpace

    params = baseline_params(SearchSpace.model_validate(SPACE))
    assert params == {"rank": 4, "alpha": 8, "learning_rate": math.sqrt(1e-4 * 1e-3), "epochs": 1}


class Runner:
    """A real run_trial: the loss falls with the learning rate, reported at three steps."""

    def __init__(self) -> None:
        self.ran: list[tuple[int, dict]] = []

    def __call__(self, number, params, should_prune) -> TrialRecord:
        self.ran.append((number, params))
        final = 1.0 / params["learning_rate"] / 1e4
        evals = []
        for step in (1, 2, 3):
            loss = final * (4 - step)
            evals.append([step, loss])
            if should_prune(step, loss):
                return TrialRecord(number, "pruned", params, loss, evals)
        return TrialRecord(number, "complete", params, final, evals)


def test_search_runs_the_missing_trials_only_and_resumes_the_interrupted_one():
    first = Runner()
    records = search(SPACE, 3, seed=7, finished=[], run_trial=first)
    assert [r.number for r in records] == [0, 1, 2]
    assert first.ran[0][1] == {"rank": 4, "alpha": 8, "learning_rate": math.sqrt(1e-7), "epochs": 1}

    # The same finished trials lead to the same next parameters, process death or not.
    again = Runner()
    resumed = search(SPACE, 3, seed=7, finished=records[:2], run_trial=again)
    assert [n for n, _ in again.ran] == [2]
    assert again.ran[0][1] == first.ran[2][1]

    interrupted = {
        "number": 2,
        "params": {"rank": 8, "alpha": 16, "learning_rate": 5e-4, "epochs": 2},
    }
    third = Runner()
    search(SPACE, 3, seed=7, finished=records[:2], run_trial=third, interrupted=interrupted)
    assert third.ran == [(2, interrupted["params"])]
    assert [r.number for r in resumed] == [0, 1, 2]


def test_a_trial_far_worse_than_the_median_is_pruned_after_its_first_evaluation():
    finished = [
        TrialRecord(
            0,
            "complete",
            {"rank": 4, "alpha": 8, "learning_rate": 1e-3, "epochs": 1},
            0.1,
            [[1, 0.3], [2, 0.2], [3, 0.1]],
        ),
        TrialRecord(
            1,
            "complete",
            {"rank": 8, "alpha": 8, "learning_rate": 1e-3, "epochs": 1},
            0.1,
            [[1, 0.3], [2, 0.2], [3, 0.1]],
        ),
    ]
    slow = {"number": 2, "params": {"rank": 4, "alpha": 16, "learning_rate": 1e-4, "epochs": 2}}
    records = search(SPACE, 3, seed=0, finished=finished, run_trial=Runner(), interrupted=slow)
    assert records[2].state == "pruned"
    assert len(records[2].eval_losses) == 2, "never pruned on its first evaluation"
