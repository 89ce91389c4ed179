"""Only the assistant's tokens carry loss (SmolLM2's real chat template and tokenizer); batches
grouped by length."""

from __future__ import annotations

import json
import random

import pytest
from transformers import AutoTokenizer

from trainer.data import (
    IGNORE_INDEX,
    DatasetError,
    GroupedSampler,
    encode,
    encode_rows,
    grouped_order,
    read_rows,
)

SYSTEM = "You triage tickets. Answer in JSON."


@pytest.fixture(scope="module")
def tokenizer(smollm2_tokenizer_dir):
    return AutoTokenizer.from_pretrained(str(smollm2_tokenizer_dir))


def learned_text(tokenizer, encoded) -> str:
    return tokenizer.decode([t for t in encoded.labels if t != IGNORE_INDEX])


def test_loss_only_on_the_assistant_answer_and_its_end_of_turn(tokenizer):
    answer = '{"category": "billing", "priority": "high"}'
    messages = [
        {"role": "system", "content": SYSTEM},
        {"role": "user", "content": "I was charged twice"},
        {"role": "assistant", "content": answer},
    ]
    encoded = encode(tokenizer, messages, max_len=512)
    assert learned_text(tokenizer, encoded) == answer + tokenizer.eos_token
    # Every position with a label is the same token as the input: nothing is shifted here.
    assert all(
        lab in (IGNORE_INDEX, tok)
        for lab, tok in zip(encoded.labels, encoded.input_ids, strict=True)
    )
    rendered = tokenizer.apply_chat_template(messages, tokenize=False)
    assert tokenizer.decode(encoded.input_ids) == rendered
    prompt_len = len(
        tokenizer.apply_chat_template(messages[:2], add_generation_prompt=True, tokenize=True)[
            "input_ids"
        ]
    )
    assert set(encoded.labels[:prompt_len]) == {IGNORE_INDEX}


def test_every_assistant_turn_of_a_multi_turn_chat_is_learned_and_nothing_else(tokenizer):
    messages = [
        {"role": "system", "content": SYSTEM},
        {"role": "user", "content": "first question"},
        {"role": "assistant", "content": "first answer"},
        {"role": "user", "content": "second question"},
        {"role": "assistant", "content": "second answer"},
    ]
    text = learned_text(tokenizer, encode(tokenizer, messages, max_len=512))
    eos = tokenizer.eos_token
    assert text == f"first answer{eos}second answer{eos}"


def test_truncation_keeps_the_start_and_drops_rows_with_nothing_left_to_learn(tokenizer):
    long_prompt = [
        {"role": "system", "content": SYSTEM * 40},
        {"role": "user", "content": "hi"},
        {"role": "assistant", "content": "hello"},
    ]
    short = [
        {"role": "system", "content": SYSTEM},
        {"role": "user", "content": "hi"},
        {"role": "assistant", "content": "hello"},
    ]
    assert encode(tokenizer, long_prompt, max_len=64) is None
    full = encode(tokenizer, short, max_len=512)
    cut = encode(tokenizer, short, max_len=len(full.input_ids) - 1)  # the trailing newline goes
    assert cut.input_ids == full.input_ids[:-1]
    assert learned_text(tokenizer, cut) == "hello" + tokenizer.eos_token
    result = encode_rows(tokenizer, [{"messages": long_prompt}, {"messages": short}], max_len=64)
    assert (len(result.examples), result.dropped) == (1, 1)


def test_rows_that_cannot_be_trained_on_are_refused(tokenizer, tmp_path):
    with pytest.raises(DatasetError, match="assistant"):
        encode(tokenizer, [{"role": "user", "content": "no answer"}], max_len=64)
    bad = tmp_path / "train.jsonl"
    bad.write_text(json.dumps({"messages": []}) + "\n")
    with pytest.raises(DatasetError, match="line 1"):
        list(read_rows(bad))
    bad.write_text("{not json\n")
    with pytest.raises(DatasetError, match="not JSON"):
        list(read_rows(bad))


def padded_tokens(order: list[int], lengths: list[int], batch: int) -> int:
    runs = [order[i : i + batch] for i in range(0, len(order), batch)]
    return sum(len(run) * max(lengths[i] for i in run) for run in runs)


def test_grouped_batches_hold_rows_of_similar_length_and_every_row_once():
    rng = random.Random(1)
    lengths = [rng.randint(90, 260) for _ in range(83)]  # 10 runs of 8 and a short one
    order = grouped_order(lengths, batch=8, seed=0)
    assert sorted(order) == list(range(83))
    shuffled = list(range(83))
    rng.shuffle(shuffled)
    real = sum(lengths)
    assert padded_tokens(order, lengths, 8) < 1.1 * real < padded_tokens(shuffled, lengths, 8)
    assert len(order[80:]) == 3 and set(order[80:]) == set(order[-3:])  # the short run is last


def test_the_grouped_order_is_a_function_of_seed_and_epoch():
    lengths = [100 + (i * 7) % 50 for i in range(40)]
    sampler = GroupedSampler(lengths, batch=4, seed=3)
    first = list(sampler)
    assert list(GroupedSampler(lengths, batch=4, seed=3)) == first  # a resumed run: same order
    sampler.set_epoch(1)
    second = list(sampler)
    assert second != first and sorted(second) == sorted(first)
    sampler.set_epoch(0)
    assert list(sampler) == first
