"""The quantizer's pure decisions: the variant plan, the gates, the choice, the golden score."""

from __future__ import annotations

import pytest

from quantizer import domain, golden
from shared.events.quantization import VariantReport
from shared.tasks.spec import Thresholds


def report(name: str, quality: float | None, **over) -> VariantReport:
    engine = "transformers" if name == domain.MERGED else "llama.cpp"
    fields = {"status": "evaluated", "quality": quality, "p95_ms": 100.0, **over}
    return VariantReport(name=name, engine=engine, method="m", **fields)


def judge(v: VariantReport, merged_q: float | None, seconds: float | None = 0.5, **over):
    kw = {"floor": 0.98, "budget": domain.Budget(p95_ms=2000.0), "cost_hour_usd": 3.6} | over
    return domain.judged(v, merged_q, seconds_per_query=seconds, **kw)


def test_plan_maps_targets_to_a_cpu_and_a_gpu_form_each_once_gguf_first():
    names = [p.name for p in domain.plan(["int4", "gguf", "int8", "int8", "fp8"])]
    assert names == [
        "gguf-f16",
        "gguf-q8_0",
        "gguf-q4_k_m",
        "vllm-w8a16",
        "vllm-w4a16",
        "vllm-fp8",
    ]
    assert [p.scheme for p in domain.plan(["int8"])] == ["Q8_0", "W8A16"]
    with pytest.raises(ValueError, match="unknown quantization target"):
        domain.plan(["int3"])


def test_retention_is_not_measured_when_the_merged_model_scores_nothing():
    assert domain.retention(0.5, 0.8) == pytest.approx(0.625)
    assert domain.retention(0.0, 0.0) is None
    assert domain.retention(None, 0.8) is None


def test_gates_fail_closed_and_cost_comes_from_measured_seconds():
    ok = judge(report("gguf-q8_0", 0.79), 0.8)
    assert ok.passed and ok.retention == pytest.approx(0.9875)
    assert ok.cost_per_query_usd == pytest.approx(0.5 * 3.6 / 3600)
    low = judge(report("gguf-q4_k_m", 0.7), 0.8)
    assert not low.passed and [g.name for g in low.gates if not g.passed] == ["retention"]
    slow = judge(report("gguf-f16", 0.8, p95_ms=5000.0), 0.8)
    assert [g.name for g in slow.gates if not g.passed] == ["p95_latency_ms"]
    untimed = judge(report("gguf-f16", 0.8, p95_ms=None), 0.8, seconds=None)
    failed = {g.name: g.reason for g in untimed.gates if not g.passed}
    assert failed == {"p95_latency_ms": "not measured", "cost_per_query_usd": "not measured"}
    skipped = VariantReport(
        name="vllm-w4a16", engine="vllm", method="m", status="skipped", reason="needs a GPU"
    )
    assert judge(skipped, 0.8) == skipped and not skipped.passed


def test_cheapest_passing_variant_is_chosen_over_the_merged_model():
    variants = [
        judge(report(domain.MERGED, 0.8), 0.8, seconds=4.0),
        judge(report("gguf-f16", 0.8), 0.8, seconds=1.0),
        judge(report("gguf-q8_0", 0.8), 0.8, seconds=0.6),
        judge(report("gguf-q4_k_m", 0.6), 0.8, seconds=0.4),  # cheaper, but loses quality
    ]
    name, reason = domain.choose(variants)
    assert name == "gguf-q8_0"
    assert "cheapest" in reason and "gguf-f16" in reason


def test_no_passing_variant_chooses_the_merged_model_when_it_passes_and_says_why():
    variants = [
        judge(report(domain.MERGED, 0.8), 0.8),
        judge(report("gguf-q8_0", None), 0.8),
        VariantReport(
            name="vllm-w8a16",
            engine="vllm",
            method="m",
            status="skipped",
            reason="skipped: needs a GPU",
        ),
    ]
    name, reason = domain.choose(variants)
    assert name == domain.MERGED
    assert "gguf-q8_0 failed retention not measured" in reason
    assert "vllm-w8a16 skipped (skipped: needs a GPU)" in reason


def test_the_serving_gates_compare_each_form_with_the_teacher_and_fail_closed():
    thresholds = Thresholds(
        p95_latency_ms=2000, max_latency_vs_teacher=1.0, max_cost_vs_teacher=0.5
    )
    metrics = {domain.TEACHER_P95: 800.0, domain.TEACHER_COST: 0.002}
    budget = domain.Budget.of(thresholds, metrics)
    assert budget == domain.Budget(2000, 1.0, 0.5, 800.0, 0.002)
    # 0.5 s of a $3.6/h machine per query: $0.0005, a quarter of the teacher's $0.002.
    fast = judge(report("gguf-q8_0", 0.8, p95_ms=400.0), 0.8, budget=budget)
    ratios = {g.name: g.value for g in fast.gates}
    assert fast.passed
    assert ratios["latency_vs_teacher"] == pytest.approx(0.5)
    assert ratios["cost_vs_teacher"] == pytest.approx(0.25)
    slow = judge(report("gguf-f16", 0.8, p95_ms=1200.0), 0.8, seconds=2.0, budget=budget)
    assert [g.name for g in slow.gates if not g.passed] == ["latency_vs_teacher", "cost_vs_teacher"]
    # An evaluation that measured no teacher latency: the ratio fails, never passes.
    blind = domain.Budget.of(thresholds, {domain.TEACHER_COST: 0.002})
    unmeasured = judge(report("gguf-q8_0", 0.8, p95_ms=400.0), 0.8, budget=blind)
    [gate] = [g for g in unmeasured.gates if not g.passed]
    assert gate.name == "latency_vs_teacher" and gate.reason.startswith("not measured")


def test_when_no_form_passes_the_serving_gates_nothing_is_chosen_and_the_reason_says_why():
    budget = domain.Budget(p95_ms=100.0)
    variants = [
        judge(report(domain.MERGED, 0.8, p95_ms=3000.0), 0.8, budget=budget),
        judge(report("gguf-q8_0", 0.8, p95_ms=400.0), 0.8, budget=budget),
    ]
    name, reason = domain.choose(variants)
    assert name is None
    assert "merged failed p95_latency_ms 3000 vs 100" in reason
    assert "gguf-q8_0 failed p95_latency_ms 400 vs 100" in reason
    assert "more training data cannot fix latency or cost" in reason


def test_golden_score_reads_the_primary_metric_and_schema_validity():
    rows = golden.parse_golden(
        b'{"id": "a", "input": "x", "output": "{\\"team\\": \\"it\\", \\"p\\": \\"low\\"}"}\n'
        b'{"id": "b", "input": "y", "output": "{\\"team\\": \\"hr\\", \\"p\\": \\"low\\"}"}\n'
    )
    schema = {"type": "object", "required": ["team", "p"]}
    replies = {"a": '{"team": " IT ", "p": "low"}', "b": '{"team": "it"}'}
    s = golden.score(replies, rows, "exact_row", schema)
    assert s["quality"] == s["exact_row"] == 0.5
    assert s["team_accuracy"] == 0.5 and s["p_accuracy"] == 0.5
    assert s["schema_validity"] == 0.5
    assert golden.score(replies, rows, "p_accuracy", None)["quality"] == 0.5
    with pytest.raises(golden.GoldenError):
        golden.parse_golden(b'{"id": "a"}\n')


def test_the_end_of_the_cycle_blames_latency_and_cost_only_when_they_are_what_failed():
    unmeasured = [
        judge(report(domain.MERGED, 0.8), 0.8, seconds=None),  # no cost measured
        judge(report("gguf-q8_0", 0.5), 0.8),
    ]
    name, reason = domain.choose(unmeasured)
    assert name is None and "cost_per_query_usd not measured" in reason
    assert "more training data" not in reason
