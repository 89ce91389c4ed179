"""The report renders from numbers alone: same results, same bytes, same artifact refs."""

from __future__ import annotations

import json

import pytest

from evaluator.assemble import (
    COST_NOTE,
    LATENCY_NOTE,
    flat_metrics,
    section,
    serving,
    teacher_reference,
    vs_teacher,
    vs_teacher_metrics,
)
from evaluator.data import GoldenRow
from evaluator.metrics import task_metrics
from evaluator.report import FORMAT, render_charts, render_markdown, store_report
from shared.artifacts import AsyncArtifactStore, LocalArtifactStore

ROWS = [
    GoldenRow(id="a", input="x", output='{"k": "1"}', use_case="one"),
    GoldenRow(id="b", input="y", output='{"k": "2"}', use_case="two"),
]


def result(replies: dict[str, str]) -> dict:
    return {
        "replies": replies,
        "latency_ms_single": [12.0, 30.0],
        "latency_ms_amortised": [4.0, 4.0],
        "compute_s_per_example": 0.004,
        "probe_replies": {},
        "perplexity": 12.5,
        "prompt_tokens": [100, 140] if len(replies) == 2 else [30, 34],
    }


def report() -> dict:
    sections = {}
    for name, replies in {
        "teacher": {"a": '{"k": "1"}', "b": '{"k": "2"}'},
        "base": {},
        "candidate": {"a": '{"k": "1"}'},
    }.items():
        m = task_metrics(replies, ROWS, schema=None, refusal={})
        sections[name] = section(result(replies), m, cached=False, cost=0.001)
    return {
        "format": FORMAT,
        "task_name": "t",
        "task_version": 1,
        "iteration": 1,
        "candidate": {"kind": "adapter", "ref": {"sha256": "ab" * 32}, "quant_format": None},
        "golden_set": {"sha256": "cd" * 32, "examples": 2},
        "passed": False,
        "outcome": "iterate",
        "reason": "gates failed: quality_vs_teacher=0.5 (threshold 0.85)",
        "gates": [{"name": "quality_vs_teacher", "passed": False, "value": 0.5, "threshold": 0.85}],
        "failing_slices": ["two"],
        "error_patterns": [{"field": "k", "expected": "2", "got": "<invalid>", "count": 1}],
        "models": sections,
        "vs_teacher": versus(),
        "general_regression": {"probe": None, "perplexity": 0.0, "worst": 0.0},
        "latency_note": LATENCY_NOTE,
        "cost": {"per_query_usd": {"teacher": 0.001}, "compute_hour_usd": 2.0, "note": COST_NOTE},
    }


def versus() -> dict:
    speed = serving(
        result({}), 2.0, teacher_p95_ms=60.0, teacher_cost_usd=0.000016
    )  # 0.004 s x $2 / 3600 = $2.2e-6 per query
    return vs_teacher("exact_row", 0.5, 1.0, speed)


def test_vs_teacher_puts_each_figure_beside_the_teachers_as_a_ratio():
    block = versus()
    assert block["primary_metric"] == "exact_row"
    assert block["quality"] == {"student": 0.5, "teacher": 1.0, "ratio": 0.5}
    latency = block["latency_p95_ms"]
    assert latency["student"] == pytest.approx(29.1) and latency["teacher"] == 60.0
    assert latency["ratio"] == pytest.approx(29.1 / 60.0) and latency["student_basis"] == "single"
    cost = block["cost_per_query_usd"]
    assert cost["student"] == pytest.approx(0.004 * 2.0 / 3600)
    assert cost["ratio"] == pytest.approx(0.004 * 2.0 / 3600 / 0.000016)
    flat = vs_teacher_metrics(block)
    assert flat["vs_teacher.quality.ratio"] == 0.5
    assert flat["vs_teacher.latency_p95_ms.teacher"] == 60.0
    assert set(flat) == {
        f"vs_teacher.{f}.{side}"
        for f in ("quality", "latency_p95_ms", "cost_per_query_usd")
        for side in ("student", "teacher", "ratio")
    }


def test_an_unknown_ratio_is_left_out_of_the_flat_metrics_not_zeroed():
    speed = serving(result({}), 2.0, teacher_p95_ms=None, teacher_cost_usd=0.0)
    flat = vs_teacher_metrics(vs_teacher("exact_row", 0.0, 0.0, speed))
    assert "vs_teacher.latency_p95_ms.ratio" not in flat
    assert "vs_teacher.cost_per_query_usd.ratio" not in flat
    assert "vs_teacher.quality.ratio" not in flat
    assert flat["vs_teacher.quality.student"] == 0.0


def test_a_variant_takes_the_teachers_figures_from_its_adapters_verdict():
    flat = flat_metrics(report()["models"], "candidate", "exact_row")
    assert teacher_reference(flat) == {
        "quality": 1.0,
        "p95_ms": pytest.approx(29.1),
        "cost_usd": 0.001,
    }
    assert teacher_reference({}) == {"quality": None, "p95_ms": None, "cost_usd": None}


def test_markdown_names_verdict_gates_slices_and_latency_basis():
    md = render_markdown(report())
    assert "**FAILED** (iterate)" in md
    assert "| quality_vs_teacher | 0.5 | 0.85 | False |" in md
    assert "| two | 100.0% | 0.0% | 0.0% |" in md
    assert "Failing slices: two" in md
    assert "| candidate | single | 2 |" in md
    assert "![accuracy by slice](slices.png)" in md
    assert "Quality is the primary metric, `exact_row`." in md
    assert "| quality | 0.5 | 1 | 0.5 |" in md
    assert "| k | `2` | `<invalid>` | 1 |" in md
    assert "| candidate | 50.0% | 50.0% |" in md  # per-field accuracy and their mean
    # Prompt tokens per request: the teacher's full instructions against the student prompt.
    assert "| teacher | 120 | 140 |" in md and "| candidate | 32 | 34 |" in md


def test_charts_are_png_and_deterministic():
    first, second = render_charts(report()), render_charts(report())
    assert set(first) == {"slices.png", "latency.png"}
    assert all(png.startswith(b"\x89PNG") for png in first.values())
    assert first == second


async def test_stored_report_names_its_files_and_is_content_addressed(tmp_path):
    store = AsyncArtifactStore(LocalArtifactStore(tmp_path))
    ref = await store_report(store, report())
    assert ref == await store_report(store, report())
    body = json.loads(await store.get_bytes(ref))
    assert set(body["artifacts"]) == {"report.md", "slices.png", "latency.png"}
    md = await store.get_bytes(_ref(body["artifacts"]["report.md"]))
    assert md.startswith(b"# Evaluation of t v1")


def test_flat_metrics_for_the_event():
    flat = flat_metrics(report()["models"], "candidate", "exact_row")
    assert flat["quality.teacher"] == 1.0
    assert flat["quality.candidate"] == 0.5
    assert flat["exact_row.candidate"] == 0.5 and flat["mean_field_accuracy.candidate"] == 0.5
    assert flat["slice.two.candidate"] == 0.0
    assert flat["latency_p95_ms.candidate.single"] == pytest.approx(29.1)
    assert flat["field_match.k.candidate"] == 0.5
    assert flat["prompt_tokens.teacher"] == 120.0 and flat["prompt_tokens.candidate"] == 32.0
    assert all(isinstance(v, float) for v in flat.values())


def _ref(data: dict):
    from shared.events.base import ArtifactRef

    return ArtifactRef.model_validate(data)


def test_flat_quality_is_the_primary_metric():
    flat = flat_metrics(report()["models"], "candidate", "k_accuracy")
    assert flat["quality.candidate"] == 0.5 and flat["slice.one.candidate"] == 1.0
    assert "quality.candidate" not in flat_metrics(report()["models"], "candidate", "x_accuracy")
