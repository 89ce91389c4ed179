"""Learning curve of the demo student: golden-set quality after training on N examples.

What the demo's gate needs to know before a long run: how many synthetic examples and epochs
SmolLM2-135M needs to reach the quality gate (exact-row accuracy >= 0.85 of the teacher's;
the pack's labels are correct by construction, so the teacher's is 1.0), and what the
training costs on this CPU.

Per --examples size it trains the trainer's own recipe (LoraSFTRecipe, same options and
seeds as the service) on that many rows of the pack's *synthetic* split under the spec's
student prompt, as curation publishes them, then decodes the first --golden golden rows with
the evaluator's own batched generation under the output schema (xgrammar), as the evaluator
scores a candidate. The base model is scored the same way first, as the curve's origin.

    .venv/bin/python bench/learn.py                        # 128,384 examples, 2 epochs
    .venv/bin/python bench/learn.py --examples 96,480 --epochs 3 --golden 64
    .venv/bin/python bench/learn.py --tiny                 # the tests' random llama: a check

Prints, per size: optimizer steps, training wall time and real tokens/s, final training
loss, then exact-row / per-field accuracy and schema-valid rate on the golden rows.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import shutil
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [
    str(ROOT),
    *(str(ROOT / "services" / s) for s in ("trainer", "evaluator")),
]
PACK = ROOT / "tasks" / "ticket-triage"
FIELDS = ("category", "priority", "product", "needs_human", "language")


def pack_generator():
    spec = importlib.util.spec_from_file_location("ticket_generate", PACK / "generate.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def training_rows(n: int, system: str, seed: int) -> list[dict[str, Any]]:
    """n synthetic-split rows as curated chat rows (the golden split never trains)."""
    messages_of = lambda r: [  # noqa: E731
        {"role": "system", "content": system},
        {"role": "user", "content": r["input"]},
        {"role": "assistant", "content": r["output"]},
    ]
    return [
        {
            "id": r["id"],
            "use_case": r["use_case"],
            "negative": r["negative"],
            "messages": messages_of(r),
        }
        for r in pack_generator().make_examples(n, seed, "synthetic")
    ]


def score(replies: list[str], golden: list[dict[str, Any]]) -> dict[str, Any]:
    valid = exact = 0
    fields = dict.fromkeys(FIELDS, 0)
    confused: Counter[str] = Counter()  # "field: wanted -> got", what the errors are
    for reply, row in zip(replies, golden, strict=True):
        want = json.loads(row["output"])
        try:
            got = json.loads(reply)
        except ValueError:
            continue
        valid += isinstance(got, dict)
        if not isinstance(got, dict):
            continue
        exact += got == want
        for f in FIELDS:
            fields[f] += got.get(f) == want.get(f)
            if got.get(f) != want.get(f):
                confused[f"{f}: {want.get(f)} -> {got.get(f)}"] += 1
    n = len(golden)
    return {
        "valid": valid / n,
        "exact_row": exact / n,
        **{f: v / n for f, v in fields.items()},
        "confused": confused,
    }


def evaluate(model_dir: Path, adapter: Path | None, spec, golden, batch_size: int) -> dict:
    from evaluator import ml

    model, tokenizer = ml.load(model_dir, adapter, "cpu")
    grammar = ml.grammar_for(model, tokenizer, spec.output_schema)
    prompts = ml.chat_prompts(tokenizer, spec.student_prompt, [r["input"] for r in golden])
    began = time.perf_counter()
    out = ml.generate_batched(
        model, tokenizer, prompts, batch_size=batch_size, max_new_tokens=64, grammar=grammar
    )
    result = score([g.text for g in out], golden)
    result["eval_s"] = time.perf_counter() - began
    return result


def train(model_dir: Path, rows, args, work: Path) -> tuple[Path, dict[str, Any]]:
    from trainer.ml import Hyperparameters, LoraSFTRecipe, RecipeOptions

    options = RecipeOptions(
        max_seq_len=384,
        batch_size=args.batch_size,
        seed=42,
        save_steps=10**9,
        text_loss=args.replay_text_loss,
    )
    hp = Hyperparameters(
        rank=args.rank, alpha=2 * args.rank, learning_rate=args.lr, epochs=args.epochs
    )
    recipe = LoraSFTRecipe(model_dir, rows, [], options, hp, work / "run")
    recipe.setup()
    outcome = recipe.train()
    adapter = recipe.save(work / "adapter")
    stats = {
        "steps": outcome.steps,
        "train_s": outcome.seconds,
        "tokens_per_s": outcome.tokens / outcome.seconds if outcome.seconds else 0.0,
        "loss": outcome.train_losses[-1][1] if outcome.train_losses else float("nan"),
        "curve": outcome.train_losses,
    }
    recipe.cleanup()
    return adapter, stats


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tiny", action="store_true")
    parser.add_argument("--examples", default="128,384")
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--golden", type=int, default=64)
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--rank", type=int, default=16)
    parser.add_argument("--lr", type=float, default=4e-4)
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument(
        "--holdout",
        type=int,
        default=0,
        help="also score this many unseen synthetic-split rows (same words as training, new "
        "tickets): the gap to the golden score is what the training words fail to carry over",
    )
    parser.add_argument(
        "--model-dir",
        type=Path,
        help="a student other than SmolLM2-135M: a safetensors model folder with a chat template",
    )
    parser.add_argument("--keep", type=Path, help="copy each trained adapter under this folder")
    parser.add_argument(
        "--replay",
        type=int,
        default=0,
        help="add this many rows of the base model answering general prompts (trainer/replay.py) "
        "to every training set, against forgetting its general skills",
    )
    parser.add_argument(
        "--replay-temperature",
        type=float,
        default=1.0,
        help="the base's replies are sampled at this temperature (the spec's "
        "training.replay.temperature); 1.0 draws from its whole distribution",
    )
    parser.add_argument(
        "--replay-text",
        type=int,
        default=0,
        help="add this many plain-text rows: the base's own continuations of short openers, "
        "trained on every token (the spec's training.replay.text_share)",
    )
    parser.add_argument(
        "--replay-text-loss",
        choices=("lm", "kl"),
        default="lm",
        help="the text rows' loss (the spec's training.replay.text_loss): 'lm' learns the "
        "sampled continuation, 'kl' the base's own next-token distribution",
    )
    args = parser.parse_args()

    from shared.tasks.load import load_spec
    from shared.tasks.sections import Replay
    from trainer import replay

    spec = load_spec(PACK / "spec.yaml")
    lines = (PACK / "golden.jsonl").read_text().splitlines()
    golden = [json.loads(line) for line in lines[: args.golden]]
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        if args.model_dir:
            model_dir = args.model_dir
        elif args.tiny:
            from tests.fixtures.models import build_tiny_llama, save_smollm2_tokenizer

            model_dir = build_tiny_llama(work / "tiny", save_smollm2_tokenizer(work / "tok"))
        else:
            from shared.models.importer import convert_gguf, smollm2_gguf

            model_dir = convert_gguf(smollm2_gguf(), work / "model")
        print(
            f"student prompt: {spec.student_prompt!r}\ngolden rows: {len(golden)}  epochs: "
            f"{args.epochs}  batch: {args.batch_size}  rank: {args.rank}  lr: {args.lr}",
            flush=True,
        )
        show("base", evaluate(model_dir, None, spec, golden, 16), {})
        base_general = general(model_dir, None, spec)
        replayed = []
        if args.replay or args.replay_text:
            setting = Replay(temperature=args.replay_temperature)
            base, tokenizer = replay.load(model_dir, replay.placement())
            replayed = replay.rows(base, tokenizer, args.replay, args.seed, setting)
            replayed += replay.text_rows(base, tokenizer, args.replay_text, args.seed, setting)
            del base
            print(
                f"replay: {len(replayed)} rows of the base's own general answers and text",
                flush=True,
            )
        for n in (int(x) for x in args.examples.split(",")):
            rows = training_rows(n, spec.student_prompt, args.seed)
            adapter, stats = train(model_dir, rows + replayed, args, work / f"n{n}")
            show(f"{n} examples", evaluate(model_dir, adapter, spec, golden, 16), stats)
            show_general(base_general, general(model_dir, adapter, spec))
            if args.holdout:
                seen = {r["messages"][1]["content"] for r in rows}
                fresh = pack_generator().make_examples(n + args.holdout, args.seed + 1, "synthetic")
                held = [r for r in fresh if r["input"] not in seen][: args.holdout]
                show("  synthetic", evaluate(model_dir, adapter, spec, held, 16), {})
            if args.keep:
                shutil.copytree(adapter, args.keep / f"n{n}", dirs_exist_ok=True)


def general(model_dir: Path, adapter: Path | None, spec) -> dict[str, Any]:
    """The evaluator's general-capability figures: probe answers (no system prompt, free
    decoding) and general-text perplexity at the student's sequence length."""
    from evaluator import ml
    from evaluator.metrics import probe_correct

    probes = [json.loads(x) for x in (PACK / "probe.jsonl").read_text().splitlines() if x]
    model, tokenizer = ml.load(model_dir, adapter, "cpu")
    prompts = ml.chat_prompts(tokenizer, None, [p["prompt"] for p in probes])
    replies = ml.generate_batched(model, tokenizer, prompts, batch_size=16, max_new_tokens=128)
    right = [probe_correct(r.text, p["answer"]) for r, p in zip(replies, probes, strict=True)]
    text = (PACK / "general.txt").read_text()
    window = spec.student.max_seq_len
    ppl = ml.perplexity(model, tokenizer, text, window=window, max_tokens=8192)
    return {"right": right, "ppl": ppl}


def show_general(base: dict[str, Any], student: dict[str, Any]) -> None:
    from evaluator.general import ProbePairs, general_regression

    b, s = base["right"], student["right"]
    pairs = ProbePairs(
        base_right=sum(b),
        lost=sum(x and not y for x, y in zip(b, s, strict=True)),
        won=sum(y and not x for x, y in zip(b, s, strict=True)),
    )
    reg = general_regression(probes=pairs, candidate_ppl=student["ppl"], base_ppl=base["ppl"])
    worst = "not measured" if reg["worst"] is None else f"{reg['worst']:.3f}"
    print(
        f"{'':<14}general: probes {sum(b)} -> {sum(s)} of {len(b)} (lost {pairs.lost}, won "
        f"{pairs.won}, p {pairs.p_value:.3g}), perplexity {base['ppl']:.2f} -> "
        f"{student['ppl']:.2f} (cross-entropy {reg['perplexity']:+.2%}); regression {worst} "
        "(the gate: 0.05)",
        flush=True,
    )


def show(label: str, result: dict[str, float], stats: dict[str, Any]) -> None:
    train = (
        f"steps {stats['steps']:>4}  train {stats['train_s']:>6.0f} s  "
        f"{stats['tokens_per_s']:>6.0f} tok/s  loss {stats['loss']:.3f}  "
        if stats
        else " " * 52
    )
    fields = "  ".join(f"{f} {result[f]:.2f}" for f in FIELDS)
    print(
        f"{label:<14}{train}exact_row {result['exact_row']:.3f}  valid {result['valid']:.2f}  "
        f"{fields}  (eval {result['eval_s']:.0f} s)",
        flush=True,
    )
    top = ", ".join(f"{k} x{v}" for k, v in result["confused"].most_common(8))
    print(f"{'':<14}errors: {top or 'none'}", flush=True)


if __name__ == "__main__":
    main()
