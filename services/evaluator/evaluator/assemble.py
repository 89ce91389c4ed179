"""From raw results to the report's sections and the event's flat metrics. Pure."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from statistics import fmean
from typing import Any

from shared.tasks.spec import TaskSpec

from .data import GoldenRow, ProbeRow
from .metrics import TaskMetrics, latency_summary, probe_accuracy, task_metrics

LATENCY_NOTE = (
    "single: one example generated alone, the wait one caller sees (teacher: one API call, "
    "up to teacher.max_concurrency in flight); amortised: a batch's wall time divided by its "
    "size, what an item costs in batched traffic. The P95 gate uses single when measured, "
    "else amortised."
)
COST_NOTE = (
    "teacher: its prompt and completion tokens x the spec's prices; local models: measured "
    "seconds of batched generation per example x compute_hour_usd / 3600."
)


def score(result: Mapping[str, Any], rows: Sequence[GoldenRow], spec: TaskSpec) -> TaskMetrics:
    return task_metrics(
        result["replies"], rows, schema=spec.output_schema, refusal=spec.negatives.expected
    )


def latency_basis(result: Mapping[str, Any]) -> tuple[str, list[float]]:
    if result.get("latency_ms_single"):
        return "single", list(result["latency_ms_single"])
    return "amortised", list(result.get("latency_ms_amortised", []))


def teacher_cost(result: Mapping[str, Any], spec: TaskSpec) -> float:
    prices = spec.teacher
    costs = [
        (p * prices.price_per_1k_prompt_tokens + c * prices.price_per_1k_completion_tokens) / 1000
        for p, c in zip(result["prompt_tokens"], result["completion_tokens"], strict=True)
    ]
    return fmean(costs) if costs else 0.0


def local_cost(result: Mapping[str, Any], compute_hour_usd: float) -> float:
    return result["compute_s_per_example"] * compute_hour_usd / 3600


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
        for basis in ("single", "amortised")
        if result.get(f"latency_ms_{basis}")
    }
    out: dict[str, Any] = {
        "cached": cached,
        "task": metrics.as_dict(),
        "latency": {basis: latency_summary(v) for basis, v in values.items()},
        "latency_values": values,
        "cost_per_query_usd": cost,
    }
    if "probe_replies" in result:
        out["general"] = {
            "probe_accuracy": probe_accuracy(result["probe_replies"], probes),
            "perplexity": result.get("perplexity"),
        }
    return out


def flat_metrics(sections: Mapping[str, Mapping[str, Any]], main: str) -> dict[str, float]:
    """The event's metrics: every model's quality, and the main model's details."""
    out: dict[str, float | None] = {}
    for name, s in sections.items():
        overall = s["task"]["overall"]
        out[f"quality.{name}"] = overall["accuracy"]
        out[f"cost_per_query_usd.{name}"] = s["cost_per_query_usd"]
        for basis, summary in s["latency"].items():
            out[f"latency_p95_ms.{name}.{basis}"] = summary["p95_ms"]
        for slice_name, part in s["task"]["slices"].items():
            out[f"slice.{slice_name}.{name}"] = part["accuracy"]
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
