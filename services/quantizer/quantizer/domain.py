"""Pure decisions: which variants a spec asks for, each variant's gates, and the choice.

No I/O here; the worker measures, the service stores, this decides.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Literal

from shared.events.quantization import Engine, VariantReport
from shared.events.values import GateResult
from shared.tasks.spec import Thresholds

MERGED = "merged"


@dataclass(frozen=True)
class VariantPlan:
    name: str
    engine: Engine
    method: str
    # GGUF: llama.cpp's file type name; vLLM-native: the llm-compressor scheme.
    kind: Literal["gguf", "compressed-tensors"]
    scheme: str


_GGUF_F16 = VariantPlan("gguf-f16", "llama.cpp", "llama.cpp F16", "gguf", "F16")
_GGUF_Q8 = VariantPlan("gguf-q8_0", "llama.cpp", "llama.cpp Q8_0", "gguf", "Q8_0")
_GGUF_Q4 = VariantPlan("gguf-q4_k_m", "llama.cpp", "llama.cpp Q4_K_M", "gguf", "Q4_K_M")
_W8A16 = VariantPlan(
    "vllm-w8a16", "vllm", "llm-compressor W8A16 (GPTQ)", "compressed-tensors", "W8A16"
)
_W4A16 = VariantPlan(
    "vllm-w4a16", "vllm", "llm-compressor W4A16 (GPTQ)", "compressed-tensors", "W4A16"
)
_FP8 = VariantPlan(
    "vllm-fp8", "vllm", "llm-compressor FP8_DYNAMIC", "compressed-tensors", "FP8_DYNAMIC"
)

# A spec target is a precision; each has a CPU form (GGUF, llama.cpp) and a GPU form (vLLM).
# FP8 has no CPU form; "gguf" is the unquantized F16 file, the CPU reference.
TARGETS: dict[str, tuple[VariantPlan, ...]] = {
    "gguf": (_GGUF_F16,),
    "int8": (_GGUF_Q8, _W8A16),
    "int4": (_GGUF_Q4, _W4A16),
    "fp8": (_FP8,),
}


def plan(targets: Iterable[str]) -> list[VariantPlan]:
    """The variants for these targets, each once, GGUF first (F16 is the others' source)."""
    unknown = sorted(set(targets) - set(TARGETS))
    if unknown:
        raise ValueError(f"unknown quantization target(s) {unknown}; known: {sorted(TARGETS)}")
    wanted = {p for t in targets for p in TARGETS[t]}
    order = [p for ps in TARGETS.values() for p in ps]
    return sorted(wanted, key=lambda p: (p.kind != "gguf", order.index(p)))


def retention(quality: float | None, merged_quality: float | None) -> float | None:
    """quality / merged quality; None when either is unmeasured or the merged model scores 0
    (nothing to retain: a ratio there would pass anything)."""
    if quality is None or merged_quality is None or merged_quality <= 0:
        return None
    return quality / merged_quality


SERVING_GATES = frozenset({"p95_latency_ms", "latency_vs_teacher", "cost_vs_teacher"})
# EvaluationCompleted.metrics keys (the evaluator's flat_metrics): the teacher's figures.
TEACHER_P95 = "latency_p95_ms.teacher.single"
TEACHER_COST = "cost_per_query_usd.teacher"


@dataclass(frozen=True)
class Budget:
    """The task's serving gates, and the teacher's figures the ratios compare with.

    They are judged here, on every serving form on the engine it would serve on, and not on
    the adapter at evaluation: the evaluator can only time transformers, and a form it never
    serves (fp32 on CPU runs 5-8x slower than llama.cpp on the same weights) would fail a
    latency budget the served form meets. None: the task sets no such gate.
    """

    p95_ms: float | None = None
    max_latency_vs_teacher: float | None = None
    max_cost_vs_teacher: float | None = None
    # From the adapter's evaluation: the teacher's P95 of single requests and cost per query.
    teacher_p95_ms: float | None = None
    teacher_cost_usd: float | None = None

    @classmethod
    def of(cls, thresholds: Thresholds, evaluation: Mapping[str, float]) -> Budget:
        return cls(
            p95_ms=thresholds.p95_latency_ms,
            max_latency_vs_teacher=thresholds.max_latency_vs_teacher,
            max_cost_vs_teacher=thresholds.max_cost_vs_teacher,
            teacher_p95_ms=evaluation.get(TEACHER_P95),
            teacher_cost_usd=evaluation.get(TEACHER_COST),
        )


def gates(variant: VariantReport, *, floor: float, budget: Budget) -> list[GateResult]:
    """A variant's gates; an unmeasured figure fails its gate, and so does a ratio to a
    teacher figure the evaluation did not measure."""
    out = [_at_least("retention", variant.retention, floor)]
    if budget.p95_ms is not None:
        out.append(_at_most("p95_latency_ms", variant.p95_ms, budget.p95_ms))
    if budget.max_latency_vs_teacher is not None:
        out.append(
            _ratio_at_most(
                "latency_vs_teacher",
                variant.p95_ms,
                budget.teacher_p95_ms,
                budget.max_latency_vs_teacher,
            )
        )
    if budget.max_cost_vs_teacher is not None:
        out.append(
            _ratio_at_most(
                "cost_vs_teacher",
                variant.cost_per_query_usd,
                budget.teacher_cost_usd,
                budget.max_cost_vs_teacher,
            )
        )
    out.append(_at_most("cost_per_query_usd", variant.cost_per_query_usd, None))
    return out


def _ratio_at_most(
    name: str, value: float | None, teacher: float | None, threshold: float
) -> GateResult:
    if value is None or teacher is None or teacher <= 0:
        why = "not measured: " + (
            "no figure of the variant's" if value is None else "no teacher figure above 0"
        )
        return GateResult(name=name, passed=False, value=None, threshold=threshold, reason=why)
    ratio = value / teacher
    return GateResult(name=name, passed=ratio <= threshold, value=ratio, threshold=threshold)


def _at_least(name: str, value: float | None, threshold: float) -> GateResult:
    if value is None:
        return GateResult(
            name=name, passed=False, value=None, threshold=threshold, reason="not measured"
        )
    return GateResult(name=name, passed=value >= threshold, value=value, threshold=threshold)


def _at_most(name: str, value: float | None, threshold: float | None) -> GateResult:
    if value is None:
        return GateResult(
            name=name, passed=False, value=None, threshold=threshold, reason="not measured"
        )
    passed = threshold is None or value <= threshold
    return GateResult(name=name, passed=passed, value=value, threshold=threshold)


def judged(
    variant: VariantReport,
    merged_quality: float | None,
    *,
    floor: float,
    budget: Budget,
    cost_hour_usd: float,
    seconds_per_query: float | None,
) -> VariantReport:
    """The variant with retention, cost, gates and pass/fail filled in."""
    if variant.status != "evaluated":
        return variant
    cost = None if seconds_per_query is None else seconds_per_query * cost_hour_usd / 3600
    kept = retention(variant.quality, merged_quality)
    if variant.name == MERGED and merged_quality is not None:
        kept = 1.0  # the reference retains itself, whatever it scores
    filled = variant.model_copy(update={"retention": kept, "cost_per_query_usd": cost})
    checks = gates(filled, floor=floor, budget=budget)
    return filled.model_copy(update={"gates": checks, "passed": all(g.passed for g in checks)})


def choose(variants: Sequence[VariantReport]) -> tuple[str | None, str]:
    """(name, reason): the cheapest passing variant other than the merged model; else the
    merged model if it passes (it retains itself, so what fails it is a serving gate or an
    unmeasured figure); else None: no form of this adapter can serve within the task's gates
    (the stage ends the cycle with the reason, which says when only latency and cost failed:
    they come from the model's size and the serving stack, so more data would not help)."""
    passing = [v for v in variants if v.name != MERGED and v.passed]
    if passing:
        best = min(passing, key=lambda v: (v.cost_per_query_usd or 0.0, v.size_bytes or 0, v.name))
        others = ", ".join(v.name for v in passing if v is not best) or "none"
        return best.name, (
            f"{best.name} is the cheapest variant passing every gate "
            f"(${best.cost_per_query_usd:.3g}/query, retention {best.retention:.3f}); "
            f"also passing: {others}"
        )
    why = "; ".join(_why_not(v) for v in variants if v.name != MERGED) or "none was made"
    merged = next((v for v in variants if v.name == MERGED), None)
    if merged is not None and merged.passed:
        return MERGED, f"no variant passed: {why}"
    merged_why = _why_not(merged) if merged is not None else "merged model not measured"
    failed = [g for g in merged.gates if not g.passed] if merged is not None else []
    speed_only = failed and all(g.name in SERVING_GATES and g.value is not None for g in failed)
    suffix = "; more training data cannot fix latency or cost" if speed_only else ""
    return None, f"no serving form passes the task's gates: {merged_why}; {why}{suffix}"


def _why_not(variant: VariantReport) -> str:
    if variant.status != "evaluated":
        return f"{variant.name} {variant.status} ({variant.reason})"
    failed = [g for g in variant.gates if not g.passed]
    parts = [
        f"{g.name} {g.reason or _fmt(g.value)}"
        + (f" vs {_fmt(g.threshold)}" if g.threshold is not None else "")
        for g in failed
    ]
    return f"{variant.name} failed {', '.join(parts)}"


def _fmt(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.4g}"  # 3000 ms, not 3e+03
