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


def rows(model_dir: Any, n: int, seed: int, max_new_tokens: int = 128) -> list[dict[str, Any]]:
    """n training rows whose answers are the base model's greedy replies, asked as the
    evaluator asks its probes (no system prompt, the model's own chat template)."""
    from evaluator import ml

    model, tokenizer = ml.load(model_dir, None, "cpu")
    asked = prompts(n, seed)
    chats = ml.chat_prompts(tokenizer, None, asked)
    replies = ml.generate_batched(
        model, tokenizer, chats, batch_size=16, max_new_tokens=max_new_tokens
    )
    return [
        {
            "id": f"replay-{i:04d}",
            "use_case": "replay",
            "negative": False,
            "messages": [
                {"role": "user", "content": prompt},
                {"role": "assistant", "content": reply.text.strip()},
            ],
        }
        for i, (prompt, reply) in enumerate(zip(asked, replies, strict=True))
        if reply.text.strip()
    ]
