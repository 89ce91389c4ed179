"""Use case: a trained adapter against its base model and the teacher, on the task's golden set.

Answers `training.completed` with `evaluation.completed`, plus `cycle.iteration.requested`
(quality short of the teacher, iterations left) or `cycle.failed` (no fix by more data, or
no iterations left). The base model and the teacher come from the results cache when they
have already been run on this golden set.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from shared.bus import Delivery, PermanentError
from shared.events.catalog import TrainingCompleted

from . import domain
from .assemble import flat_metrics, latency_basis, local_cost, score, section, teacher_cost
from .metrics import general_regression, judge_agreement, percentile, score_example
from .outcome import Outcome, Verdict, commit_plan
from .results import LocalModel
from .teacher import check_residency

if TYPE_CHECKING:
    from .service import Evaluator, Inputs


async def evaluate(
    ev: Evaluator, event: TrainingCompleted, inputs: Inputs, delivery: Delivery
) -> Outcome:
    spec = inputs.spec
    check_residency(spec, ev.ctx.settings.allowed_teacher_hosts)
    manifest = await ev.reader.manifest(event.adapter, "adapter")
    if manifest.get("kind") != "adapter":
        raise PermanentError(f"adapter {event.adapter.uri} is a {manifest.get('kind')!r} manifest")
    if manifest.get("base_model") != event.base_model.sha256:
        raise PermanentError(
            f"adapter {event.adapter.sha256[:12]} was trained on base "
            f"{str(manifest.get('base_model'))[:12]}, not on {event.base_model.sha256[:12]}"
        )
    # Local models first: a corrupt adapter is refused before any teacher token is spent, and
    # their results are cached, so a teacher outage afterwards does not cost a second run.
    base = LocalModel(key=event.base_model.sha256, model=event.base_model)
    cand = LocalModel(key=event.adapter.sha256, model=event.base_model, adapter=event.adapter)
    local, cached = await ev.local_results(inputs, [base, cand], delivery)
    teacher, teacher_cached = await ev.teacher_results(inputs, delivery)

    metrics = {
        "teacher": score(teacher, inputs.rows, spec),
        "base": score(local[base.key], inputs.rows, spec),
        "candidate": score(local[cand.key], inputs.rows, spec),
    }
    hour = ev.settings.compute_hour_usd
    sections = {
        "teacher": section(
            teacher, metrics["teacher"], cached=teacher_cached, cost=teacher_cost(teacher, spec)
        ),
        "base": section(
            local[base.key],
            metrics["base"],
            cached=base.key in cached,
            cost=local_cost(local[base.key], hour),
            probes=inputs.probes,
        ),
        "candidate": section(
            local[cand.key],
            metrics["candidate"],
            cached=cand.key in cached,
            cost=local_cost(local[cand.key], hour),
            probes=inputs.probes,
        ),
    }
    regression = general_regression(
        candidate_probe=sections["candidate"]["general"]["probe_accuracy"],
        base_probe=sections["base"]["general"]["probe_accuracy"],
        candidate_ppl=local[cand.key].get("perplexity"),
        base_ppl=local[base.key].get("perplexity"),
    )
    basis, latencies = latency_basis(local[cand.key])
    gates = domain.adapter_gates(
        student_quality=metrics["candidate"].overall.accuracy,
        teacher_quality=metrics["teacher"].overall.accuracy,
        regression=regression["worst"],
        p95_ms=percentile(latencies, 95),
        thresholds=spec.thresholds,
    )
    decision = domain.decide(
        gates,
        student={k: v.accuracy for k, v in metrics["candidate"].slices.items()},
        teacher={k: v.accuracy for k, v in metrics["teacher"].slices.items()},
        ratio=spec.thresholds.min_quality_vs_teacher,
        iteration=event.iteration,
        max_iterations=spec.thresholds.max_iterations,
    )
    judge = None
    if ev.settings.judge:
        judge = await _judge(ev, inputs, local[cand.key]["replies"], delivery)

    flat = flat_metrics(sections, "candidate")
    if regression["worst"] is not None:
        flat["general_regression"] = regression["worst"]
    if judge and judge["agreement"] is not None:
        flat["judge.pass_rate"] = judge["pass_rate"]
        flat["judge.agreement"] = judge["agreement"]
    verdict = Verdict(
        source=event,
        task_name=event.task_name,
        task_version=event.task_version,
        task_spec=event.task_spec,
        iteration=event.iteration,
        candidate=event.adapter,
        kind="adapter",
        quant_format=None,
        gates=gates,
        decision=decision,
        quality=metrics["candidate"].overall.accuracy,
        sections=sections,
        metrics=flat,
        extra={
            "base_model": event.base_model.model_dump(mode="json"),
            "general_regression": regression,
            "latency_basis": basis,
            "judge": judge,
        },
    )
    return await commit_plan(ev, inputs, verdict)


async def _judge(ev: Evaluator, inputs: Inputs, replies: dict[str, str], delivery: Delivery):
    spec = inputs.spec
    client = ev.teacher(spec)
    try:
        async with delivery.heartbeat():
            verdicts = await client.judge(spec.instructions, inputs.rows, replies)
    finally:
        await client.close()
    exact = [
        score_example(
            replies.get(r.id, ""), r, schema=spec.output_schema, refusal=spec.negatives.expected
        ).correct
        for r in inputs.rows
    ]
    return judge_agreement(verdicts, exact)
