"""`distillery cycle results`: the seed's table, every figure read from a cycle's events."""

from __future__ import annotations

import json

import pytest

from shared.cli.demo_task import PACK
from shared.cli.results import collect
from shared.cli.results_render import markdown, page
from shared.events.catalog import (
    CycleFailed,
    CycleRequested,
    EvaluationCompleted,
    SynthCompleted,
    TrainingProgressed,
)
from shared.events.quantization import VariantSelected
from shared.tasks.load import load_spec

CYCLE = "6f1c1a52-0000-4000-8000-000000000001"
REPORT = {"uri": "report", "sha256": "a" * 64, "size": 1}
SPEC = {"uri": "spec", "sha256": "b" * 64, "size": 1}


def at(minute: int, **fields) -> dict:
    when = f"2026-12-01T{10 + minute // 60:02d}:{minute % 60:02d}:00+00:00"
    return {"cycle_id": CYCLE, "occurred_at": when, **fields}


def section(p50: float, p95: float, cost: float, tokens: float, accuracy: float) -> dict:
    return {
        "task": {"overall": {"accuracy": accuracy, "json_validity": 1.0}},
        "latency": {"single": {"n": 64, "p50_ms": p50, "p95_ms": p95}},
        "cost_per_query_usd": cost,
        "prompt_tokens": {"mean": tokens, "max": tokens + 40},
    }


def _spec_json() -> bytes:
    """The demo pack's spec with a hosted teacher, as the stages store it (JSON)."""
    spec = load_spec(PACK / "spec.yaml").model_dump(mode="json")
    spec["teacher"]["base_url"] = "https://api.openai.com/v1"
    spec["residency"] = {"allowed_teacher_hosts": ["api.openai.com"]}
    return json.dumps(spec).encode()


ARTIFACTS = {
    "report": json.dumps(
        {
            "golden_set": {"examples": 64},
            "vs_teacher": {"primary_metric": "exact_row"},
            "cost": {"compute_hour_usd": 2.0},
            "models": {
                "teacher": section(700.0, 1100.0, 0.002, 610.0, 1.0),
                "base": section(900.0, 2000.0, 0.0002, 95.0, 0.0),
                "candidate": section(950.0, 2100.0, 0.0003, 95.0, 0.875),
            },
        }
    ).encode(),
    "spec": _spec_json(),
}


def variant(name: str, p95: float, cost: float, **extra) -> dict:
    return {
        "name": name,
        "engine": "llama.cpp",
        "method": name,
        "status": "passed",
        "size_bytes": 150 * 2**20,
        "retention": 1.0,
        "p50_ms": p95 / 2,
        "p95_ms": p95,
        "cost_per_query_usd": cost,
        **extra,
    }


def events(*, selected: bool = True) -> list[tuple[str, dict]]:
    out = [
        (CycleRequested.subject, at(0, task_name="t")),
        (SynthCompleted.subject, at(4, task_name="t", cost_usd=6.1)),
        (TrainingProgressed.subject, at(10, step=1, total_steps=2, loss=2.5)),
        (TrainingProgressed.subject, at(20, step=2, total_steps=2, loss=0.5)),
        (
            EvaluationCompleted.subject,
            at(
                30,
                task_name="t",
                candidate_kind="adapter",
                report=REPORT,
                task_spec=SPEC,
                metrics={"quality.teacher": 1.0, "quality.base": 0.0, "quality.candidate": 0.875},
            ),
        ),
    ]
    if selected:
        chosen = variant("gguf-q8_0", 400.0, 0.00005)
        other = variant("gguf-f16", 600.0, 0.0001, status="failed", reason="slower")
        out.append(
            (
                VariantSelected.subject,
                at(
                    60,
                    task_name="t",
                    chosen="gguf-q8_0",
                    chosen_engine="llama.cpp",
                    variants=[other, chosen],
                ),
            )
        )
    else:
        out.append((CycleFailed.subject, at(60, stage="quantization", reason="too slow")))
    return out


def read(ref: dict) -> bytes:
    return ARTIFACTS[ref["uri"]]


def test_every_figure_comes_from_the_events_and_reports():
    r = collect(events(), read, queries_per_day=1000, teacher_label="simulated")
    assert r["outcome"] == "serving form chosen: gguf-q8_0 on llama.cpp"
    assert r["wall_s"] == 3600
    q = r["quality"]
    assert (q["teacher"], q["base"], q["student"], q["ratio"]) == (1.0, 0.0, 0.875, 0.875)
    rows = {s["model"]: s for s in r["serving"]}
    assert (rows["teacher"]["p95_ms"], rows["teacher"]["prompt_tokens"]) == (1100.0, 610.0)
    assert rows["teacher"]["source"] == "simulated"
    # The student as it is served: the chosen variant on its engine, not the adapter.
    assert (rows["student"]["p95_ms"], rows["student"]["cost_per_query_usd"]) == (400.0, 0.00005)
    assert rows["student"]["source"] == "gguf-q8_0 on llama.cpp, measured"
    assert rows["student"]["prompt_tokens"] == 95.0
    assert [v["chosen"] for v in r["variants"]] == [False, True]
    assert r["residency"]["teacher_host"] == "api.openai.com"
    assert r["residency"]["allowed_teacher_hosts"] == ["api.openai.com"]
    roi = r["roi"]
    # $6.10 of synthesis + 1 h at $2; each query saves $0.00195, 1000 a day.
    assert roi["one_time_usd"] == pytest.approx(8.1)
    assert roi["saving_per_query_usd"] == pytest.approx(0.00195)
    assert roi["break_even_days"] == pytest.approx(8.1 / 1.95)
    assert r["training_curve"] == [(1, 2.5), (2, 0.5)]


def test_the_tables_label_simulated_teacher_figures_and_draw_charts():
    r = collect(events(), read, queries_per_day=1000, teacher_label="SIMULATED latency")
    md = markdown(r)
    assert "Teacher figures: SIMULATED latency. Student figures: measured." in md
    assert "| 1 | 0 | 0.875 | 0.875 |" in md
    assert "| student | 200 ms | 400 ms | $0.000050 | 95 | gguf-q8_0 on llama.cpp, measured |" in md
    assert "| break-even | 4.15 days |" in md
    html = page(r)
    assert html.count("<svg") == 3 and "<polyline" in html


def test_a_cycle_that_ended_before_serving_says_so_and_never_breaks_even():
    r = collect(events(selected=False), read, queries_per_day=1000)
    assert r["outcome"] == "failed at quantization: too slow"
    assert r["variants"] == []
    student = next(s for s in r["serving"] if s["model"] == "student")
    assert student["source"] == "adapter on transformers, measured (single)"
    assert r["residency"]["production_queries"] == "still go to the teacher"
    assert r["roi"]["break_even_days"] is None and not r["roi"]["served"]
    md = markdown(r)
    assert "Serving forms" not in md
    assert "| break-even | none yet: no student serves this task" in md


def test_a_student_that_costs_more_never_breaks_even():
    expensive = events()
    expensive[-1][1]["variants"][1]["cost_per_query_usd"] = 0.01
    r = collect(expensive, read, queries_per_day=1000)
    assert r["roi"]["break_even_days"] is None
    assert "never: the student costs no less per query" in markdown(r)


def test_no_events_is_an_error_not_an_empty_table():
    with pytest.raises(ValueError, match="no events"):
        collect([], read, queries_per_day=1)
