"""The recipe: LoRA (QLoRA on CUDA) supervised fine-tuning of a chat model with trl.

One class, four phases: setup (tokenise, load, wrap in LoRA) → train (resumes from the trial
folder's last finished checkpoint) → save (adapter safetensors) → cleanup. torch,
transformers, peft and trl are imported inside functions so that importing this module (the
service does, for types) costs nothing.

Choices and why (measured on the development machines; figures in the service README):
- loss on assistant tokens only, labels built in `data.py` (the template has no generation
  markers); on the CPU logits are computed only where a label is (safe_trainer.py);
- fp32 on CPUs without bf16 hardware (AVX2 only: bf16 autocast ran ~5-10x slower); bf16 where
  the CPU has AMX (with AVX512-BF16 alone a step measured slower: shared/models/hardware.py);
  bf16 (else fp16) on CUDA;
- the model's own cross-entropy on CPU, trl's tiled LM-head loss on CUDA (its torch fallback,
  without Triton, is slower: x1.5 on SmolLM2, x4 on the tiny test model);
- batches grouped by length on the CPU (data.GroupedSampler), padding-free rows on CUDA with
  flash attention; padding-free can be forced anywhere (transformers masks packed rows by
  their position_ids), and measured slower than grouped on the CPU;
- no LoRA dropout by default (peft's default; 0.05 cost half the CPU throughput);
- gradient checkpointing only when the batch would not fit without it (memory.py): recomputing
  the forward cost ~30% of the CPU step on short rows;
- the effective batch (batch_size x accumulation) split into micro-batches that fit the
  memory there is (memory.py): a batch of 8 SmolLM2 conversations ran out of 24 GiB;
- QLoRA (4-bit NF4 base) only with CUDA and bitsandbytes installed.
Every choice can be forced through TrainerSettings.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from .checkpoint import latest_checkpoint
from .data import encode_rows
from .memory import Lengths
from .plan import cuda, hardware, has_flash_attention, resolve

Emit = Callable[[dict[str, Any]], None]


@dataclass(frozen=True)
class Hyperparameters:
    rank: int
    alpha: int
    learning_rate: float
    epochs: int

    def as_dict(self) -> dict[str, float | int]:
        return asdict(self)


@dataclass(frozen=True)
class RecipeOptions:
    max_seq_len: int
    batch_size: int
    gradient_accumulation_steps: int = 1
    seed: int = 0
    precision: str = "auto"  # auto | fp32 | bf16 | fp16
    gradient_checkpointing: str = "auto"  # auto | on | off
    batching: str = "auto"  # auto | padded | grouped | padding_free
    quantize: str = "auto"  # auto | 4bit | none
    save_steps: int = 20
    evaluations: int = 4  # per trial, for pruning
    max_steps: int | None = None  # caps every trial; for smoke runs and tests
    # peft's default. 0.05 halved CPU throughput on SmolLM2 (a dropout copy of every adapted
    # layer's input; bench/README.md); set TRAINER_LORA_DROPOUT to trade speed for it.
    lora_dropout: float = 0.0
    loss: str = "auto"  # auto | plain | fused
    text_loss: str = "lm"  # lm | kl: plain-text replay rows' loss (the spec's replay.text_loss)
    memory_budget_mib: int | None = None  # None: a share of the free memory (memory.py)


@dataclass
class TrialOutcome:
    steps: int = 0
    total_steps: int = 0
    resumed_from_step: int = 0
    first_step: int | None = None
    validation_loss: float | None = None
    eval_losses: list[tuple[int, float]] = field(default_factory=list)
    train_losses: list[tuple[int, float]] = field(default_factory=list)
    tokens: int = 0
    seconds: float = 0.0
    pruned: bool = False

    @property
    def tokens_per_second(self) -> float:
        return self.tokens / self.seconds if self.seconds > 0 else 0.0


def load_base(model_dir: Path, plan: dict[str, Any]):
    """Base model from safetensors only (no remote code), as the plan asks."""
    import torch
    from transformers import AutoModelForCausalLM

    dtype = {"bf16": torch.bfloat16, "fp16": torch.float16}.get(plan["precision"], torch.float32)
    kwargs: dict[str, Any] = {"dtype": dtype, "use_safetensors": True, "trust_remote_code": False}
    if plan["quantize"] == "4bit":
        from transformers import BitsAndBytesConfig

        kwargs["quantization_config"] = BitsAndBytesConfig(
            load_in_4bit=True,
            bnb_4bit_quant_type="nf4",
            bnb_4bit_compute_dtype=dtype,
            bnb_4bit_use_double_quant=True,
        )
    if plan["batching"] == "padding_free" and has_flash_attention():
        kwargs["attn_implementation"] = "flash_attention_2"
    model = AutoModelForCausalLM.from_pretrained(str(model_dir), **kwargs)
    if plan["quantize"] == "4bit":
        from peft import prepare_model_for_kbit_training

        model = prepare_model_for_kbit_training(
            model, use_gradient_checkpointing=plan["gradient_checkpointing"]
        )
    return model


def lora_config(hp: Hyperparameters, dropout: float):
    from peft import LoraConfig

    return LoraConfig(
        r=hp.rank,
        lora_alpha=hp.alpha,
        lora_dropout=dropout,
        target_modules="all-linear",
        task_type="CAUSAL_LM",
    )


def _eval_interval(total_steps: int, evaluations: int) -> int:
    return max(1, math.ceil(total_steps / max(1, evaluations)))


class LoraSFTRecipe:
    """One training run (one trial) of one LoRA adapter; see the module docstring."""

    def __init__(
        self,
        model_dir: Path,
        train_rows: list[dict[str, Any]],
        validation_rows: list[dict[str, Any]],
        options: RecipeOptions,
        hp: Hyperparameters,
        trial_dir: Path,
        *,
        trial: int = 0,
        emit: Emit | None = None,
        should_prune: Callable[[int, float], bool] | None = None,
    ) -> None:
        self.model_dir = Path(model_dir)
        self.train_rows, self.validation_rows = train_rows, validation_rows
        self.options, self.hp = options, hp
        self.trial_dir, self.trial = Path(trial_dir), trial
        self.emit = emit or (lambda _: None)
        self.should_prune = should_prune or (lambda _step, _loss: False)
        self.plan: dict[str, Any] = {}
        self.trainer: Any = None
        self.dropped = 0

    def setup(self) -> None:
        from datasets import Dataset
        from transformers import AutoTokenizer, set_seed

        from .callbacks import make_callbacks
        from .safe_trainer import safe_sft_trainer

        set_seed(self.options.seed)
        self.plan = resolve(self.options, hardware())
        tokenizer = AutoTokenizer.from_pretrained(str(self.model_dir))
        if tokenizer.pad_token is None:
            tokenizer.pad_token = tokenizer.eos_token
        sets = {}
        lengths = []
        for name, rows in (("train", self.train_rows), ("validation", self.validation_rows)):
            encoded = encode_rows(tokenizer, rows, self.options.max_seq_len)
            self.dropped += encoded.dropped
            examples = encoded.examples
            sets[name] = Dataset.from_list([asdict(e) for e in examples])
            lengths += [(len(e.input_ids), e.trained_tokens, e.first_label) for e in examples]
        if len(sets["train"]) == 0:
            from shared.bus import PermanentError

            raise PermanentError("no training example fits student.max_seq_len")
        steps_per_epoch = math.ceil(
            len(sets["train"])
            / (self.options.batch_size * self.options.gradient_accumulation_steps)
        )
        total = steps_per_epoch * self.hp.epochs
        if self.options.max_steps:
            total = min(total, self.options.max_steps)
        model = load_base(self.model_dir, self.plan)
        self.plan.update(self._batches(model, Lengths.of(lengths)))
        self.callbacks = make_callbacks(self)
        self.trainer = safe_sft_trainer()(
            model=model,
            args=self._config(total, len(sets["validation"]) > 0),
            train_dataset=sets["train"],
            eval_dataset=sets["validation"] if len(sets["validation"]) else None,
            processing_class=tokenizer,
            peft_config=lora_config(self.hp, self.options.lora_dropout),
            callbacks=self.callbacks,
        )
        self.trainer.plain_loss = self.plan["plain_loss"]
        self.trainer.text_kl = self.plan["text_loss"] == "kl"
        if self.plan["batching"] == "grouped":
            self.trainer.group_seed = self.options.seed

    def _batches(self, model: Any, lengths: Lengths) -> dict[str, Any]:
        from .memory import Shape, memory_budget, plan_batches

        return plan_batches(
            Shape.of(model.config, sum(p.numel() for p in model.parameters())),
            self.plan,
            self.options.batch_size,
            self.options.gradient_accumulation_steps,
            lengths,
            memory_budget(self.options.memory_budget_mib),
        )

    def _config(self, total_steps: int, has_eval: bool):
        from trl import SFTConfig

        plan, options = self.plan, self.options
        return SFTConfig(
            output_dir=str(self.trial_dir),
            max_steps=total_steps,
            num_train_epochs=self.hp.epochs,
            per_device_train_batch_size=plan["micro_batch"],
            per_device_eval_batch_size=plan["micro_batch"],
            gradient_accumulation_steps=plan["gradient_accumulation_steps"],
            learning_rate=self.hp.learning_rate,
            lr_scheduler_type="cosine",
            warmup_steps=0.05,
            weight_decay=0.0,
            max_length=None,  # rows are cut to max_seq_len by data.encode
            padding_free=plan["batching"] == "padding_free",
            bf16=plan["precision"] == "bf16",
            fp16=plan["precision"] == "fp16",
            use_cpu=not cuda(),
            gradient_checkpointing=plan["gradient_checkpointing"],
            gradient_checkpointing_kwargs={"use_reentrant": False},
            eval_strategy="steps" if has_eval else "no",
            eval_steps=_eval_interval(total_steps, options.evaluations),
            save_strategy="steps",
            save_steps=options.save_steps,
            save_total_limit=2,
            logging_steps=1,
            include_num_input_tokens_seen="non_padding",
            seed=options.seed,
            data_seed=options.seed,
            report_to=[],
            disable_tqdm=True,
            dataloader_num_workers=0,
            dataset_num_proc=None,
            remove_unused_columns=True,
        )

    def train(self) -> TrialOutcome:
        outcome = self.callbacks[0].outcome
        resume = latest_checkpoint(self.trial_dir)
        started = time.perf_counter()
        self.trainer.train(resume_from_checkpoint=str(resume) if resume else None)
        outcome.seconds = time.perf_counter() - started
        outcome.total_steps = self.trainer.state.max_steps
        step = self.trainer.state.global_step
        evaluated_last = bool(outcome.eval_losses) and outcome.eval_losses[-1][0] == step
        if self.trainer.eval_dataset is not None and not (outcome.pruned or evaluated_last):
            # The final validation loss ranks the trial; evaluate unless the schedule just did.
            loss = float(self.trainer.evaluate()["eval_loss"])
            outcome.eval_losses.append((step, loss))
        if outcome.eval_losses:
            outcome.validation_loss = outcome.eval_losses[-1][1]
        return outcome

    def save(self, adapter_dir: Path) -> Path:
        adapter_dir = Path(adapter_dir)
        self.trainer.model.save_pretrained(str(adapter_dir), safe_serialization=True)
        (adapter_dir / "README.md").unlink(missing_ok=True)  # peft's model card template
        return adapter_dir

    def cleanup(self) -> None:
        import gc

        import torch

        self.trainer = None
        gc.collect()
        if torch.cuda.is_available():
            torch.cuda.empty_cache()
