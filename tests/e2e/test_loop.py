"""The loop from its first event, on a real nats-server, every service its own process: the
path of a student that fails its gates.

`distillery up` runs the embedded runtime (nats-server from the wheel, SQLite, a local artifact
folder) and supervises the services; the operator commands (`models import`, `task apply`,
`cycle start`) are the real CLI. The teacher is the demo's stand-in teacher
(tasks/ticket-triage/teacher.py: scripted answers from the task pack, NOT a model), because a
tiny random model can neither write valid tickets nor label them. The student is a tiny
random-weight llama, so it fails its gates: the evaluator asks for an iteration focused on the
failing slices, the loop runs again, and at the spec's maximum the cycle fails with the reason.
Every event is read back from the outbox tables, which is also what `cycle status` shows.

Each service that lands adds its step to the expected sequence, so the loop is proven as far
as it goes.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from shared.cli.demo_teacher import start_stand_in
from shared.events.catalog import (
    CycleFailed,
    CycleIterationRequested,
    CycleRequested,
    DatasetPublished,
    EvaluationCompleted,
    SynthCompleted,
    TrainingCompleted,
)
from shared.events.production import RolloutChanged
from shared.events.quantization import VariantSelected

from .harness import PACK, distillery, in_order, running, start_cycle, wait_for, write_spec

ONE_PASS = [SynthCompleted, DatasetPublished, TrainingCompleted, EvaluationCompleted]
# max_iterations 2: pass 1 fails its gates → an iteration → pass 2 fails → the cycle fails.
EXPECTED = [CycleRequested, *ONE_PASS, CycleIterationRequested, *ONE_PASS, CycleFailed]
pytestmark = pytest.mark.slow


def test_a_cycle_runs_the_whole_loop_and_iterates(tmp_path: Path, tiny_model_dir: Path):
    teacher, teacher_url = start_stand_in(PACK, tmp_path / "teacher.log")
    try:
        with running(tmp_path) as home:
            # max_iterations 2: the loop test needs the iteration path (the demo stops at 1).
            spec = write_spec(tmp_path / "task", teacher_url, max_iterations=2)
            cycle_id = start_cycle(home, tiny_model_dir, spec)
            # Generous: two training runs and four model evaluations on 2 shared cores.
            events = wait_for(home, cycle_id, CycleFailed.subject, timeout=1500, failing_ok=True)
            status = distillery(home, "cycle", "status", cycle_id)
    finally:
        teacher.terminate()
        teacher.wait(10)

    payloads = in_order(events, EXPECTED)
    synth = SynthCompleted.model_validate(payloads[1])
    assert synth.examples > 0 and synth.iteration == 1
    dataset = DatasetPublished.model_validate(payloads[2])
    assert dataset.train_examples > 0 and dataset.validation_examples > 0
    trained = TrainingCompleted.model_validate(payloads[3])
    assert trained.dataset_version == dataset.dataset_version
    verdict = EvaluationCompleted.model_validate(payloads[4])
    assert not verdict.passed and verdict.failing_slices
    iteration = CycleIterationRequested.model_validate(payloads[5])
    assert iteration.iteration == 2 and iteration.failing_slices == verdict.failing_slices
    focused = SynthCompleted.model_validate(payloads[6])
    assert focused.iteration == 2
    assert set(focused.examples_per_slice) <= set(verdict.failing_slices)
    second = DatasetPublished.model_validate(payloads[7])
    assert second.train_examples > dataset.train_examples, "iteration 2 adds to the data"
    failed = CycleFailed.model_validate(payloads[-1])
    assert failed.stage == "evaluation"

    # The quantizer and the deployer were running: a failing verdict reaches neither.
    assert not {VariantSelected.subject, RolloutChanged.subject} & {s for s, _ in events}
    assert status.returncode == 0, status.stderr
    assert CycleFailed.subject in status.stdout
