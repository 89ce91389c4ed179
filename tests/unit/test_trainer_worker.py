"""The worker contract, both ways, as `shared.runtime.worker` and the stage carry it."""

from __future__ import annotations

import json
import math
from pathlib import Path

from shared.runtime.worker import _payload_model
from shared.tasks.sections import SearchSpace
from trainer.domain import TrialRecord
from trainer.ml import RecipeOptions
from trainer.worker import Search, TrainPayload, TrainResult, train


def test_the_worker_reads_its_payload_as_the_model():
    assert _payload_model(train) is TrainPayload


def test_payload_survives_the_json_pipe():
    payload = TrainPayload(
        run_dir=Path("/runs/r"),
        model_dir=Path("/models/m"),
        train=Path("/runs/r/data/train.jsonl"),
        validation=Path("/runs/r/data/validation.jsonl"),
        options=RecipeOptions(max_seq_len=128, batch_size=4, max_steps=3),
        training=Search(search=SearchSpace(), trials=2, seed=7),
        finished=[TrialRecord(number=0, state="complete", params={"rank": 4}, validation_loss=1.5)],
    )
    wire = json.loads(json.dumps(payload.model_dump(mode="json")))
    assert TrainPayload.model_validate(wire) == payload


def test_a_diverged_trial_keeps_its_nan_loss_through_the_pipe():
    diverged = TrialRecord(
        number=1, state="failed", params={}, validation_loss=math.nan, train_losses=[[1, math.inf]]
    )
    result = TrainResult(
        best=0,
        adapter_dir=Path("/runs/r/trial-0/adapter"),
        trials=[TrialRecord(number=0, state="complete", params={}, validation_loss=0.5), diverged],
        examples={"train": 4, "validation": 2},
        plan={"precision": "fp32"},
        hardware={"device": "cpu"},
        memory={"peak_rss_mib": 100.0},
        wall_seconds=1.0,
    )
    # shared.runtime.worker sends json.dumps of the dump; the stage validates what it reads.
    back = TrainResult.model_validate(json.loads(json.dumps(result.model_dump(mode="json"))))
    assert math.isnan(back.trials[1].validation_loss)
    assert back.trials[1].train_losses == [[1.0, math.inf]]
