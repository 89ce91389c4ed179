"""A cycle's results, from its own events and the reports they point at: the seed's table.

Every figure is read from what the stages recorded, never computed from constants here:
- quality on the golden set (teacher, base, student on the task's primary metric, and the
  ratio) and prompt tokens per request, from the adapter's evaluation report;
- P50/P95 latency and cost per query: the teacher's as the evaluator timed and priced it,
  the student's as its chosen serving form measured on its own engine (variant.selected),
  else as the evaluator timed the adapter on transformers;
- each quantized variant's size, retention and latency (variant.selected);
- residency: the teacher's host, from the applied spec, and where the student runs;
- ROI: the cycle's one-time cost (the teacher's bill for synthesis, from synth.completed,
  plus the cycle's wall time at the evaluator's compute price) against what each query saves,
  at a query volume the caller states.

The teacher's figures are whatever its endpoint did. For the demo's stand-in teacher they are
simulated (latency from a stated distribution, cost from list prices); the caller labels them
(`teacher_label`), and the table prints the label beside them.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from datetime import datetime
from typing import Any
from urllib.parse import urlsplit

from shared.tasks.load import spec_from_json
from shared.tasks.spec import TaskSpec

EVALUATION = "distillery.evaluation.completed.v1"
SELECTED = "distillery.variant.selected.v1"
SYNTH = "distillery.synth.completed.v1"
PROGRESS = "distillery.training.progressed.v1"
FAILED = "distillery.cycle.failed.v1"
MEASURED_TEACHER = "as its endpoint answered the evaluator; cost: its tokens at the spec's prices"

Events = Sequence[tuple[str, dict[str, Any]]]
ReadRef = Callable[[dict[str, Any]], bytes]


def collect(
    events: Events,
    read: ReadRef,
    *,
    queries_per_day: int,
    teacher_label: str = MEASURED_TEACHER,
) -> dict[str, Any]:
    """The results of one cycle's events (oldest first); `read` fetches an artifact's bytes."""
    if not events:
        raise ValueError("the cycle has no events")
    adapter = [p for s, p in events if s == EVALUATION and p["candidate_kind"] == "adapter"]
    selected = next((p for s, p in reversed(events) if s == SELECTED), None)
    failed = next((p for s, p in reversed(events) if s == FAILED), None)
    started, ended = _when(events[0][1]), _when(events[-1][1])
    out: dict[str, Any] = {
        "cycle_id": events[0][1].get("cycle_id"),
        "task": next((p["task_name"] for _, p in events if "task_name" in p), None),
        "outcome": _outcome(adapter, selected, failed),
        "wall_s": (ended - started).total_seconds(),
        "teacher_label": teacher_label,
        "training_curve": [
            (p["step"], p["loss"]) for s, p in events if s == PROGRESS and p.get("loss") is not None
        ],
        "variants": [dict(v, chosen=v["name"] == selected["chosen"]) for v in selected["variants"]]
        if selected
        else [],
    }
    if not adapter:
        return out
    report = json.loads(read(adapter[-1]["report"]))
    spec = spec_from_json(read(adapter[-1]["task_spec"]))
    models = report["models"]
    metric = (report.get("vs_teacher") or {}).get("primary_metric", "exact_row")
    flat = adapter[-1]["metrics"]
    teacher_q, student_q = flat.get("quality.teacher"), flat.get("quality.candidate")
    out["quality"] = {
        "metric": metric,
        "examples": report["golden_set"]["examples"],
        **{name: flat.get(f"quality.{key}") for name, key in _NAMES},
        "ratio": student_q / teacher_q if student_q is not None and teacher_q else None,
        "json_validity": {n: _overall(models, k, "json_validity") for n, k in _NAMES},
    }
    serving = [_model_row("teacher", models["teacher"], teacher_label)]
    serving.append(_model_row("base", models["base"], "transformers, measured ({basis})"))
    student = _model_row(
        "student", models["candidate"], "adapter on transformers, measured ({basis})"
    )
    chosen = next((v for v in out["variants"] if v["chosen"]), None)
    if chosen:
        student.update(
            p50_ms=chosen.get("p50_ms"),
            p95_ms=chosen.get("p95_ms"),
            cost_per_query_usd=chosen.get("cost_per_query_usd"),
            source=f"{chosen['name']} on {chosen['engine']}, measured",
        )
    serving.append(student)
    out["serving"] = serving
    out["residency"] = _residency(spec, selected)
    out["roi"] = _roi(events, report, serving, queries_per_day, served=selected is not None)
    return out


_NAMES = (("teacher", "teacher"), ("base", "base"), ("student", "candidate"))


def _when(payload: dict[str, Any]) -> datetime:
    return datetime.fromisoformat(payload["occurred_at"])


def _outcome(adapter: list[dict], selected: dict | None, failed: dict | None) -> str:
    if selected:
        return f"serving form chosen: {selected['chosen']} on {selected['chosen_engine']}"
    if failed:
        return f"failed at {failed['stage']}: {failed['reason']}"
    return "evaluated, not yet served" if adapter else "in progress"


def _overall(models: dict[str, Any], key: str, field: str) -> float | None:
    return models[key]["task"]["overall"].get(field)


def _model_row(name: str, section: dict[str, Any], source: str) -> dict[str, Any]:
    latency = section.get("latency") or {}
    # Per request where there is such a figure: single-stream first, as the teacher's is.
    basis = next((b for b in ("single", "concurrent", "amortised") if b in latency), None)
    figures = latency.get(basis) or {}
    tokens = section.get("prompt_tokens") or {}
    return {
        "model": name,
        "p50_ms": figures.get("p50_ms"),
        "p95_ms": figures.get("p95_ms"),
        "latency_basis": basis,
        "cost_per_query_usd": section.get("cost_per_query_usd"),
        "prompt_tokens": tokens.get("mean"),
        "source": source.replace("{basis}", basis or "no timings"),
    }


def _residency(spec: TaskSpec, selected: dict | None) -> dict[str, Any]:
    host = urlsplit(str(spec.teacher.base_url)).hostname or "unknown"
    where = (
        f"{selected['chosen_engine']} on infrastructure you run" if selected else "not served yet"
    )
    allowed = list(spec.residency.allowed_teacher_hosts)
    return {
        "teacher_host": host,
        "allowed_teacher_hosts": allowed,
        "teacher_receives": "synthesis requests and the golden inputs (evaluation)",
        "student": where,
        "production_queries": "stay on your infrastructure once the student serves them"
        if selected
        else "still go to the teacher",
    }


def _roi(
    events: Events,
    report: dict[str, Any],
    serving: list[dict[str, Any]],
    queries_per_day: int,
    *,
    served: bool,
) -> dict[str, Any]:
    """What the cycle cost against what each query saves. Nothing breaks even until a student
    serves: a cycle that ended at a gate has a saving per query only on paper."""
    teacher_spend = sum(p.get("cost_usd", 0.0) for s, p in events if s == SYNTH)
    hour_usd = (report.get("cost") or {}).get("compute_hour_usd") or 0.0
    wall_h = (_when(events[-1][1]) - _when(events[0][1])).total_seconds() / 3600
    one_time = teacher_spend + wall_h * hour_usd
    by_name = {row["model"]: row for row in serving}
    teacher, student = (by_name[n]["cost_per_query_usd"] for n in ("teacher", "student"))
    saving = teacher - student if teacher is not None and student is not None else None
    per_day = saving * queries_per_day if saving is not None else None
    return {
        "synthesis_teacher_usd": teacher_spend,
        "compute_hours": wall_h,
        "compute_hour_usd": hour_usd,
        "one_time_usd": one_time,
        "saving_per_query_usd": saving,
        "queries_per_day": queries_per_day,
        "saving_per_day_usd": per_day,
        "served": served,
        "break_even_days": one_time / per_day if served and per_day and per_day > 0 else None,
    }
