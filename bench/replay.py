"""Replay rows for bench/learn.py: the base model's own answers to general prompts.

An experiment, not yet the trainer's: a LoRA trained on one task's rows alone forgets the base
model's general behaviour (bench/README.md, learn.py: 17 of 48 general probes right before,
1 after). Mixing in rows where the *base model* answers general prompts, as it answers them
today, teaches the adapter to leave everything that is not the task alone (self-distillation:
no outside data, no teacher calls).

The prompts are kinds the evaluator's probes are not (tasks/ticket-triage/probe.jsonl asks
arithmetic, unit conversions, capitals and letter games): describing, defining, listing,
rewriting and short writing, over words the probes do not use. So the general-regression
gate still measures whether the preservation carries over to prompts it was not trained on.
"""

from __future__ import annotations

import random
from typing import Any

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
    rng = random.Random(seed)
    out: dict[str, None] = {}
    for _ in range(n * 50):
        if len(out) == n:
            return list(out)
        text = rng.choice(TEMPLATES).format(
            noun=rng.choice(NOUNS),
            adj=rng.choice(ADJECTIVES),
            place=rng.choice(PLACES),
            animal=rng.choice(ANIMALS),
        )
        out[text] = None
    raise ValueError(f"only {len(out)} distinct replay prompts, {n} asked")


def rows(
    model_dir: Any, n: int, seed: int, temperature: float = 0.0, max_new_tokens: int = 128
) -> list[dict[str, Any]]:
    """n training rows whose answers are the base model's replies, asked as the evaluator asks
    its probes (no system prompt, the model's own chat template): greedy at temperature 0,
    else sampled from its whole distribution at that temperature. Greedy replies are the
    base's single likeliest answers; training on them sharpens the distribution (perplexity
    rises), while replies sampled at 1.0 are draws from the base itself, so their loss pulls
    the student toward the base's distribution as a whole."""
    from evaluator import ml

    model, tokenizer = ml.load(model_dir, None, "cpu")
    asked = prompts(n, seed)
    chats = ml.chat_prompts(tokenizer, None, asked)
    if temperature > 0:
        texts = _sampled(model, tokenizer, chats, temperature, max_new_tokens, seed)
    else:
        greedy = ml.generate_batched(
            model, tokenizer, chats, batch_size=16, max_new_tokens=max_new_tokens
        )
        texts = [g.text for g in greedy]
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
        for i, (prompt, reply) in enumerate(zip(asked, texts, strict=True))
        if reply.strip()
    ]


def _sampled(
    model: Any, tokenizer: Any, chats: list[str], temperature: float, max_new: int, seed: int
) -> list[str]:
    import torch

    torch.manual_seed(seed)
    tokenizer.padding_side = "left"
    out: list[str] = []
    for start in range(0, len(chats), 16):
        batch = tokenizer(
            chats[start : start + 16], return_tensors="pt", padding=True, add_special_tokens=False
        )
        with torch.inference_mode():
            generated = model.generate(
                **batch,
                do_sample=True,
                temperature=temperature,
                top_k=0,  # the whole distribution: no truncation of its tail
                top_p=1.0,
                max_new_tokens=max_new,
                pad_token_id=tokenizer.pad_token_id,
            )
        width = batch["input_ids"].shape[1]
        out += tokenizer.batch_decode(generated[:, width:], skip_special_tokens=True)
    return out
