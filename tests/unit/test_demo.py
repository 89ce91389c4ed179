"""The demo's task: the pack's spec, CPU-sized, pointing at the stand-in teacher.

The demo itself (minutes of CPU training) is run by hand; its output is in README.md. The
loop it drives is proven by tests/e2e.
"""

from __future__ import annotations

import json

import pytest
from typer.testing import CliRunner

from shared.cli.demo_events import describe
from shared.cli.demo_task import (
    DEMO_GOLDEN_ROWS,
    PACK,
    STUDENTS,
    check_teacher_url,
    write_demo_task,
)
from shared.cli.main import app
from shared.tasks import load_spec


def test_demo_task_is_a_valid_spec_sized_for_a_cpu(tmp_path):
    path = write_demo_task(PACK, tmp_path / "task", "http://127.0.0.1:9999/v1")
    spec = load_spec(path)
    assert spec.name == "ticket-triage"
    assert spec.teacher.base_url == "http://127.0.0.1:9999/v1"
    assert spec.synthesis.examples < 200 and spec.training.trials == 1
    assert spec.thresholds.max_iterations == 1
    assert spec.training.batch_size * spec.training.gradient_accumulation_steps == 8
    golden = (tmp_path / "task" / "golden.jsonl").read_text().splitlines()
    assert len(golden) == DEMO_GOLDEN_ROWS
    assert {json.loads(line)["use_case"] for line in golden} >= {u.name for u in spec.use_cases}


def test_the_gemma_demo_is_sized_as_the_bench_measured_it_and_evaluates_every_golden_row(tmp_path):
    path = write_demo_task(PACK, tmp_path / "task", "http://127.0.0.1:9/v1", "gemma-3-270m")
    spec = load_spec(path)
    assert spec.student.base_model == "gemma-3-270m"
    assert spec.synthesis.examples == 2000 and spec.training.trials == 1
    search = spec.training.search
    assert (search.rank, search.alpha, search.epochs) == ([16], [32], [2])
    assert search.learning_rate.low == search.learning_rate.high == 4e-4
    # A pretrained base keeps its general text with plain-text rows learned as the KL from
    # its own distribution, and needs no chat rows.
    replay = spec.training.replay
    assert (replay.share, replay.text_share, replay.text_loss) == (0.0, 0.15, "kl")
    # Never by lowering the quality bar.
    assert spec.thresholds.min_quality_vs_teacher >= 0.85
    golden = (tmp_path / "task" / "golden.jsonl").read_text().splitlines()
    assert len(golden) == STUDENTS["gemma-3-270m"].golden_rows == 240
    # Latency is timed on a spread of 64 of them, by the evaluator and the quantizer alike.
    settings = STUDENTS["gemma-3-270m"].settings
    assert settings["EVALUATOR_LATENCY_SAMPLES"] == settings["QUANTIZER_LATENCY_SAMPLES"] == "64"


def test_events_are_described_for_a_reader():
    line = describe(
        "distillery.evaluation.completed.v1",
        {
            "passed": False,
            "gates": [{"name": "quality", "passed": False, "value": 0.4, "threshold": 0.85}],
            "failing_slices": ["billing"],
        },
    )
    assert line == (
        "evaluation.completed: failed; quality FAIL (0.4 vs 0.85); failing slices ['billing']"
    )
    assert describe("distillery.cycle.failed.v1", {"stage": "synth", "reason": "r"}) == (
        "cycle.failed: at synth: r"
    )
    chosen = describe(
        "distillery.variant.selected.v1",
        {
            "chosen": "gguf-q8_0",
            "chosen_engine": "llama.cpp",
            "reason": "cheapest",
            "variants": [
                {"name": "merged", "passed": False, "p95_ms": 3140.2, "retention": 1.0},
                {"name": "gguf-q8_0", "passed": True, "p95_ms": 412.0, "retention": 0.99},
                {"name": "vllm-w8a16", "passed": False, "p95_ms": None, "retention": None},
            ],
        },
    )
    assert chosen == (
        "variant.selected: gguf-q8_0 on llama.cpp: cheapest [merged fail p95 3140 ms retention "
        "1.000; gguf-q8_0 pass p95 412 ms retention 0.990; vllm-w8a16 fail]"
    )
    feedback = describe(
        "distillery.feedback.dataset.published.v1", {"examples": 37, "request_ids": 52}
    )
    assert feedback == (
        "feedback.dataset.published: 37 examples from 52 production requests, for curation to merge"
    )
    step = describe(
        "distillery.rollout.changed.v1",
        {"stage": "ab", "traffic_share": 0.5, "reason": "shadow held over 60 requests"},
    )
    assert step == "rollout.changed: ab at 50% of traffic: shadow held over 60 requests"


def test_a_real_teacher_and_a_bigger_student_replace_the_stand_ins(tmp_path):
    path = write_demo_task(
        PACK,
        tmp_path / "task",
        "https://api.openai.com/v1",
        "gemma-3-270m",
        teacher_model="gpt-4o",
        base_model="qwen2.5-1.5b-instruct",
    )
    spec = load_spec(path)
    assert (spec.teacher.base_url, spec.teacher.model) == ("https://api.openai.com/v1", "gpt-4o")
    # The user named the host; the pack's loopback hosts stay allowed for local endpoints.
    assert spec.residency.allowed_teacher_hosts == ["127.0.0.1", "localhost", "api.openai.com"]
    # The bigger student is trained at the chosen profile's sizes.
    assert spec.student.base_model == "qwen2.5-1.5b-instruct"
    assert spec.synthesis.examples == 2000


@pytest.mark.parametrize("url", ["api.openai.com/v1", "ftp://host/v1", "https:///v1", ""])
def test_a_teacher_url_that_is_not_an_http_url_is_refused_with_an_example(url):
    with pytest.raises(ValueError, match=r"an http\(s\) URL with a host, e\.g\. https://"):
        check_teacher_url(url)


@pytest.mark.parametrize(
    ("args", "error"),
    [
        (["--teacher-url", "https://api.openai.com/v1"], "go together"),
        (["--teacher-model", "gpt-4o"], "go together"),
        (["--teacher-url", "api.openai.com", "--teacher-model", "gpt-4o"], "http(s) URL"),
        (["--student-model", "/nonexistent/model"], "not a folder"),
    ],
)
def test_demo_refuses_a_bad_teacher_or_student_before_starting_anything(tmp_path, args, error):
    result = CliRunner().invoke(app, ["demo", "--home", str(tmp_path / "home"), *args])
    assert result.exit_code != 0
    assert error in result.output
    # Nothing was started: no runtime folder was made.
    assert not (tmp_path / "home").exists()
