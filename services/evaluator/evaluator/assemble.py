"""From raw results to the report's sections and the event's flat metrics. Pure."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from statistics import fmean
from typing import Any

from shared.tasks.spec import TaskSpec

from .data import GoldenRow, ProbeRow
from .domain import Serving, ratio_of
from .metrics import (
    TaskMetrics,
    latency_summary,
    percentile,
    primary,
    probe_accuracy,
    task_metrics,
)

LATENCY_NOTE = (
    "single: one example generated alone, the wait one caller sees on an idle server "
    "(teacher: one API call, up to teacher.max_concurrency in flight); concurrent: examples "
    "generated together in groups of EVALUATOR_LATENCY_CONCURRENCY, each waiting its group's "
    "time, the wait under load; amortised: a batch's wall time divided by its size, what an "
    "item costs in batched traffic. The P95 gates use the first measured of concurrent, "
    "single, amortised; the ratio to the teacher needs per-request waits (not amortised)."
)
COST_NOTE = (
    "teacher: its prompt and completion tokens x the spec's prices; local models: measured "
    "seconds of batched generation per example x compute_hour_usd / 3600."
)


def score(result: Mapping[str, Any], rows: Sequence[GoldenRow], spec: TaskSpec) -> TaskMetrics:
    return task_metrics(
        result["replies"], rows, schema=spec.output_schema, refusal=spec.negatives.expected
    )


def quality(metrics: TaskMetrics, metric: str) -> float | None:
    return primary(metrics.overall, metric)


def slice_quality(metrics: TaskMetrics, metric: str) -> dict[str, float]:
    """The primary metric per slice; a slice without it (no such field) is left out."""
    values = {name: primary(part, metric) for name, part in metrics.slices.items()}
    return {name: v for name, v in values.items() if v is not None}


# The gates read the most demanding per-request wait that was measured: a router receives
# tickets concurrently, and the teacher's own timings were taken with requests in flight.
LATENCY_BASES = ("concurrent", "single", "amortised")


def latency_basis(result: Mapping[str, Any]) -> tuple[str, list[float]]:
    for basis in LATENCY_BASES:
        if result.get(f"latency_ms_{basis}"):
            return basis, list(result[f"latency_ms_{basis}"])
    return "amortised", []


def teacher_cost(result: Mapping[str, Any], spec: TaskSpec) -> float:
    prices = spec.teacher
    costs = [
        (p * prices.price_per_1k_prompt_tokens + c * prices.price_per_1k_completion_tokens) / 1000
        for p, c in zip(result["prompt_tokens"], result["completion_tokens"], strict=True)
    ]
    return fmean(costs) if costs else 0.0


def local_cost(result: Mapping[str, Any], compute_hour_usd: float) -> float:
    return result["compute_s_per_example"] * compute_hour_usd / 3600


def serving(
    result: Mapping[str, Any],
    compute_hour_usd: float,
    *,
    teacher_p95_ms: float | None,
    teacher_cost_usd: float | None,
) -> Serving:
    """A local model's latency and cost per query next to the teacher's."""
    basis, latencies = latency_basis(result)
    return Serving(
        p95_ms=percentile(latencies, 95),
        basis=basis,
        teacher_p95_ms=teacher_p95_ms,
        cost_usd=local_cost(result, compute_hour_usd),
        teacher_cost_usd=teacher_cost_usd,
    )


def teacher_p95(result: Mapping[str, Any]) -> float | None:
    """The teacher's P95 over its golden requests (each timed on the attempt that answered)."""
    return percentile(result.get("latency_ms_single", []), 95)


def teacher_reference(metrics: Mapping[str, float]) -> dict[str, float | None]:
    """The teacher's quality, P95 and cost per query from an adapter verdict's flat metrics,
    for its quantized variants: the figures the adapter was judged against."""
    return {
        "quality": metrics.get("quality.teacher"),
        "p95_ms": metrics.get("latency_p95_ms.teacher.single"),
        "cost_usd": metrics.get("cost_per_query_usd.teacher"),
    }


def vs_teacher(
    metric: str, student: float | None, teacher: float | None, s: Serving
) -> dict[str, Any]:
    """Student and teacher side by side, each figure absolute and as student / teacher."""
    return {
        "primary_metric": metric,
        "quality": {"student": student, "teacher": teacher, "ratio": ratio_of(student, teacher)},
        "latency_p95_ms": {
            "student": s.p95_ms,
            "teacher": s.teacher_p95_ms,
            "ratio": s.latency_vs_teacher,
            "student_basis": s.basis,
        },
        "cost_per_query_usd": {
            "student": s.cost_usd,
            "teacher": s.teacher_cost_usd,
            "ratio": s.cost_vs_teacher,
        },
    }


def vs_teacher_metrics(block: Mapping[str, Any]) -> dict[str, float]:
    """The event's flat view of vs_teacher: vs_teacher.<figure>.<student|teacher|ratio>."""
    out = {}
    for figure in ("quality", "latency_p95_ms", "cost_per_query_usd"):
        for side in ("student", "teacher", "ratio"):
            if (value := block[figure][side]) is not None:
                out[f"vs_teacher.{figure}.{side}"] = float(value)
    return out


def section(
    result: Mapping[str, Any],
    metrics: TaskMetrics,
    *,
    cached: bool,
    cost: float,
    probes: Sequence[ProbeRow] = (),
) -> dict[str, Any]:
    values = {
        basis: list(result.get(f"latency_ms_{basis}", []))
        for basis in LATENCY_BASES
        if result.get(f"latency_ms_{basis}")
    }
    out: dict[str, Any] = {
        "cached": cached,
        "task": metrics.as_dict(),
        "latency": {basis: latency_summary(v) for basis, v in values.items()},
        "latency_values": values,
        "cost_per_query_usd": cost,
    }
    tokens = result.get("prompt_tokens")
    if tokens:
        # What each request pays before its first token: the teacher's full instructions
        # against the student's short prompt (system prompt, chat template and input).
        out["prompt_tokens"] = {"mean": fmean(tokens), "max": max(tokens)}
    if "probe_replies" in result:
        out["general"] = {
            "probe_accuracy": probe_accuracy(result["probe_replies"], probes),
            "perplexity": result.get("perplexity"),
        }
    return out


def flat_metrics(
    sections: Mapping[str, Mapping[str, Any]], main: str, metric: str
) -> dict[str, float]:
    """The event's metrics: every model's quality (the primary metric, and exact row and mean
    field accuracy beside it), and the main model's details."""
    out: dict[str, float | None] = {}
    for name, s in sections.items():
        overall = s["task"]["overall"]
        out[f"quality.{name}"] = primary(overall, metric)
        out[f"exact_row.{name}"] = overall["accuracy"]
        out[f"mean_field_accuracy.{name}"] = overall["mean_field_accuracy"]
        out[f"cost_per_query_usd.{name}"] = s["cost_per_query_usd"]
        if "prompt_tokens" in s:
            out[f"prompt_tokens.{name}"] = s["prompt_tokens"]["mean"]
        for basis, summary in s["latency"].items():
            out[f"latency_p95_ms.{name}.{basis}"] = summary["p95_ms"]
        for slice_name, part in s["task"]["slices"].items():
            out[f"slice.{slice_name}.{name}"] = primary(part, metric)
        if "general" in s:
            out[f"probe_accuracy.{name}"] = s["general"]["probe_accuracy"]
            out[f"perplexity.{name}"] = s["general"]["perplexity"]
    overall = sections[main]["task"]["overall"]
    out[f"json_validity.{main}"] = overall["json_validity"]
    out[f"schema_validity.{main}"] = overall["schema_validity"]
    out[f"refusal.{main}"] = overall["refusal"]
    for field, rate in overall["field_match"].items():
        out[f"field_match.{field}.{main}"] = rate
    for basis, summary in sections[main]["latency"].items():
        out[f"latency_p50_ms.{main}.{basis}"] = summary["p50_ms"]
    return {k: float(v) for k, v in out.items() if v is not None}
