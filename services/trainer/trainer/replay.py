"""Replay rows: the base model's own answers to general prompts, mixed into training.

A LoRA trained on one task's rows alone forgets the base model's general behaviour
(bench/README.md, learn.py: 17 of 48 general probes right before, 1 after). Rows where the
*base model* answers general prompts, as it answers them today, teach the adapter to leave
everything that is not the task alone: self-distillation, with no outside data and no teacher
calls. Replies are sampled from the base's whole distribution (temperature 1.0 by default):
greedy replies are its single likeliest answers, and training on them sharpens the
distribution (general perplexity +12.9 % against +0.3 % sampled, bench/README.md).

The prompts are kinds the evaluator's probes are not (tasks/ticket-triage/probe.jsonl asks
arithmetic, unit conversions, capitals and letter games): describing, defining, listing,
rewriting and short writing, over words the probes do not use. So the general-regression
gate still measures whether the preservation carries over to prompts it was not trained on.

A chat row keeps what the base does inside its chat template. A pretrained base that was
never chat-tuned (Gemma 3 270M) does its general work outside any template, as plain text,
and chat rows alone left its general-text perplexity 199 -> 373 (+11.8 % cross-entropy, the
stop-20 Gemma demo). Plain-text rows (`text_share`) are the base's own continuations of short
openers, trained under the language-model loss on every token: the same self-distillation,
on the distribution the perplexity gate measures, from text the gate never scores.

The rows are made once per run, in the worker, and kept in the run folder (`replay.jsonl`):
a resumed trial on the same machine trains on the same rows. On a fresh machine they are
sampled again from the same seed; the count and prompts are the same, the replies may
differ in a few tokens where the hardware's arithmetic does.
"""

from __future__ import annotations

import json
import os
import random
import time
from pathlib import Path
from typing import Any

from shared.tasks.sections import Replay

FILE = "replay.jsonl"
BATCH = 16

TEMPLATES = (
    "Write one sentence about a {noun}.",
    "Explain in one sentence what a {noun} is used for.",
    "What is the opposite of the word '{adj}'?",
    "Give me a word that means the same as '{adj}'.",
    "List three things you might find in a {place}.",
    "Describe a {place} in two sentences.",
    "Write a short, friendly note inviting a neighbour to the {place}.",
    "Suggest a name for a pet {animal}.",
    "Tell me one interesting fact about the {animal}.",
    "Rewrite this sentence so it sounds more polite: 'Give me the {noun} now.'",
    "Write a two-line poem about a {adj} {noun}.",
    "Which is usually bigger, a {animal} or a {noun}? Answer in one sentence.",
    "How would you explain the word '{adj}' to a child?",
    "Give one tip for keeping a {noun} in good condition.",
    "What colour is a {animal} usually?",
    "Write a title for a story about a {adj} {animal} in a {place}.",
)
NOUNS = (
    "bicycle", "teapot", "umbrella", "notebook", "ladder", "kettle", "blanket", "compass",
    "guitar", "backpack", "candle", "hammer", "mirror", "sofa", "telescope", "wallet",
)  # fmt: skip
ADJECTIVES = (
    "quiet", "bright", "heavy", "narrow", "gentle", "ancient", "curious", "brave",
    "tidy", "noisy", "warm", "fragile", "clever", "shallow", "sturdy", "cheerful",
)  # fmt: skip
PLACES = (
    "library", "kitchen", "forest", "museum", "beach", "bakery", "train station", "park",
    "school", "farm", "castle", "hospital",
)  # fmt: skip
ANIMALS = (
    "cat", "rabbit", "owl", "horse", "dolphin", "fox", "tortoise", "parrot", "elephant",
    "squirrel", "goat", "penguin",
)  # fmt: skip


def prompts(n: int, seed: int) -> list[str]:
    """n distinct general prompts (raises when the templates cannot make that many)."""
    return _distinct(TEMPLATES, n, random.Random(seed), "prompts")  # noqa: S311 (reproducible)


def _distinct(templates: tuple[str, ...], n: int, rng: random.Random, what: str) -> list[str]:
    out: dict[str, None] = {}
    for _ in range(n * 50):
        if len(out) == n:
            break
        text = rng.choice(templates).format(
            noun=rng.choice(NOUNS),
            adj=rng.choice(ADJECTIVES),
            place=rng.choice(PLACES),
            animal=rng.choice(ANIMALS),
        )
        out[text] = None
    if len(out) < n:
        raise ValueError(f"only {len(out)} distinct replay {what}, {n} asked")
    return list(out)


OPENERS = (
    "The {noun}",
    "A {adj} {animal}",
    "In the {place},",
    "Most people who own a {noun}",
    "When the {place} opened",
    "Every {animal}",
    "It was a {adj} morning",
    "Nobody expected the {noun}",
    "Behind the {place} there",
    "My grandmother kept a {noun}",
    "The {adj} {noun}",
    "A {place} with a {noun}",
    "Yesterday a {animal} walked into the {place}",
    "Beyond the {adj} {place}",
)


def openers(n: int, seed: int) -> list[str]:
    """n distinct openings of plain text for the base to continue."""
    rng = random.Random(f"text/{seed}")  # noqa: S311 (a reproducible draw, not a secret)
    return _distinct(OPENERS, n, rng, "openers")


def count(replay: Replay, train_rows: int, share: float | None = None) -> int:
    """Replay rows for a training set of `train_rows` task rows (at least one when on);
    `share` defaults to the chat rows' share."""
    share = replay.share if share is None else share
    if share <= 0 or train_rows <= 0:
        return 0
    return max(1, round(share * train_rows))


def placement() -> tuple[str, str]:
    """Where the base answers: (device, dtype). bf16 only where the hardware does it natively
    (on a CPU without AMX or AVX512-BF16 it is emulated and several times slower)."""
    import torch

    from shared.models.hardware import cpu_has_bf16

    if torch.cuda.is_available():
        return "cuda", "bf16" if torch.cuda.is_bf16_supported() else "fp16"
    return "cpu", "bf16" if cpu_has_bf16() else "fp32"


def load(model_dir: Path, where: tuple[str, str]) -> tuple[Any, Any]:
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    device, dtype = where
    tokenizer = AutoTokenizer.from_pretrained(str(model_dir))
    model = (
        AutoModelForCausalLM.from_pretrained(
            str(model_dir),
            dtype={"bf16": torch.bfloat16, "fp16": torch.float16}.get(dtype, torch.float32),
            use_safetensors=True,
            trust_remote_code=False,
        )
        .to(device)
        .eval()
    )
    if tokenizer.pad_token_id is None:
        tokenizer.pad_token = tokenizer.eos_token
    tokenizer.padding_side = "left"
    return model, tokenizer


def _continue(
    model: Any, tokenizer: Any, texts: list[str], replay: Replay, seed: int, *, special: bool
) -> list[str]:
    """The base's sampled continuation of each text, from its whole distribution."""
    import torch

    torch.manual_seed(seed)
    out: list[str] = []
    for start in range(0, len(texts), BATCH):
        batch = tokenizer(
            texts[start : start + BATCH],
            return_tensors="pt",
            padding=True,
            add_special_tokens=special,
        ).to(model.device)
        with torch.inference_mode():
            made = model.generate(
                **batch,
                do_sample=True,
                temperature=replay.temperature,
                top_k=0,  # the whole distribution: no truncation of its tail
                top_p=1.0,
                max_new_tokens=replay.max_new_tokens,
                pad_token_id=tokenizer.pad_token_id,
            )
        width = batch["input_ids"].shape[1]
        out += tokenizer.batch_decode(made[:, width:], skip_special_tokens=True)
    return out


def rows(model: Any, tokenizer: Any, n: int, seed: int, replay: Replay) -> list[dict[str, Any]]:
    """n training rows whose answers are the base model's replies, asked as the evaluator asks
    its probes: no system prompt, the model's own chat template. A prompt the base answers
    with nothing is left out (there is nothing to preserve)."""
    asked = prompts(n, seed)
    chats = [
        tokenizer.apply_chat_template(
            [{"role": "user", "content": p}], tokenize=False, add_generation_prompt=True
        )
        for p in asked
    ]
    replies = _continue(model, tokenizer, chats, replay, seed, special=False)
    return [
        {
            "id": f"replay-{i:04d}",
            "use_case": "replay",
            "negative": False,
            "messages": [
                {"role": "user", "content": prompt},
                {"role": "assistant", "content": reply.strip()},
            ],
        }
        for i, (prompt, reply) in enumerate(zip(asked, replies, strict=True))
        if reply.strip()
    ]


def text_rows(
    model: Any, tokenizer: Any, n: int, seed: int, replay: Replay
) -> list[dict[str, Any]]:
    """n plain-text rows: an opener and the base's own continuation of it, with the
    tokenizer's usual special tokens (a BOS where the model has one), as pretraining saw."""
    opened = openers(n, seed)
    made = _continue(model, tokenizer, opened, replay, seed, special=True)
    return [
        {"id": f"replay-text-{i:04d}", "use_case": "replay", "negative": False, "text": o + c}
        for i, (o, c) in enumerate(zip(opened, made, strict=True))
        if c.strip()
    ]


def for_run(
    run_dir: Path, model_dir: Path, counts: tuple[int, int], seed: int, replay: Replay
) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """The run's replay rows (chat, then plain text), made once and kept in the run folder;
    and what was done."""
    path = run_dir / FILE
    chat, text = counts
    if chat + text <= 0:
        return [], {"asked": 0}
    counted = {"asked": chat, "asked_text": text}
    # What the rows are made from; how they are learned (text_loss) does not change them.
    header = {**counted, "seed": seed, **replay.model_dump(exclude={"text_loss"})}
    if path.exists():
        kept = [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line]
        if kept and kept[0] == header:
            return kept[1:], {**counted, "kept": len(kept) - 1, "reused": True}
    started = time.perf_counter()
    where = placement()
    model, tokenizer = load(model_dir, where)
    made = rows(model, tokenizer, chat, seed, replay) if chat else []
    made += text_rows(model, tokenizer, text, seed, replay) if text else []
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{FILE}.tmp")
    tmp.write_text("".join(json.dumps(r) + "\n" for r in [header, *made]), encoding="utf-8")
    os.replace(tmp, path)  # whole or absent: a kill mid-write leaves no half a file
    seconds = round(time.perf_counter() - started, 1)
    device, dtype = where
    return made, {
        **counted,
        "kept": len(made),
        "reused": False,
        "seconds": seconds,
        "device": device,
        "dtype": dtype,
    }
