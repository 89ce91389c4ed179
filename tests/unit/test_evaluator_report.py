"""The report renders from numbers alone: same results, same bytes, same artifact refs."""

from __future__ import annotations

import json

import pytest

from evaluator.assemble import COST_NOTE, LATENCY_NOTE, flat_metrics, section
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
        "models": sections,
        "general_regression": {"probe": None, "perplexity": 0.0, "worst": 0.0},
        "latency_note": LATENCY_NOTE,
        "cost": {"per_query_usd": {"teacher": 0.001}, "compute_hour_usd": 2.0, "note": COST_NOTE},
    }


def test_markdown_names_verdict_gates_slices_and_latency_basis():
    md = render_markdown(report())
    assert "**FAILED** (iterate)" in md
    assert "| quality_vs_teacher | 0.5 | 0.85 | False |" in md
    assert "| two | 100.0% | 0.0% | 0.0% |" in md
    assert "Failing slices: two" in md
    assert "| candidate | single | 2 |" in md
    assert "![accuracy by slice](slices.png)" in md


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
    flat = flat_metrics(report()["models"], "candidate")
    assert flat["quality.teacher"] == 1.0
    assert flat["quality.candidate"] == 0.5
    assert flat["slice.two.candidate"] == 0.0
    assert flat["latency_p95_ms.candidate.single"] == pytest.approx(29.1)
    assert flat["field_match.k.candidate"] == 0.5
    assert all(isinstance(v, float) for v in flat.values())


def _ref(data: dict):
    from shared.events.base import ArtifactRef

    return ArtifactRef.model_validate(data)
