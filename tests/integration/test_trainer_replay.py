"""Replay rows (the spec's `training.replay`): the base model's own answers to general prompts,
drawn in the worker before any trial, mixed into every trial's training rows and kept in the
run folder so a resumed run trains on the same rows. Real tiny model, real training."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from shared.tasks.sections import Replay, SearchSpace, Training
from tests.fixtures.datasets import triage_rows
from trainer import replay
from trainer.ml import RecipeOptions
from trainer.worker import Search, TrainPayload, train

ROOT = Path(__file__).resolve().parents[2]
pytestmark = pytest.mark.slow


def test_replay_is_off_unless_the_spec_asks_and_sized_by_its_share():
    assert Training().replay.share == 0 and replay.count(Training().replay, 1000) == 0
    assert replay.count(Replay(share=0.15), 84) == 13
    assert replay.count(Replay(share=0.001), 10) == 1  # on means at least one row
    assert replay.count(Replay(share=0.5), 0) == 0


def test_the_replay_prompts_are_distinct_and_none_is_a_probe():
    """The general-regression gate asks tasks/*/probe.jsonl; training on those prompts would
    let the adapter pass the gate without keeping anything it was not shown."""
    asked = replay.prompts(300, seed=0)
    assert len(set(asked)) == 300 and asked == replay.prompts(300, seed=0)
    probes = {
        json.loads(line)["prompt"].strip().lower()
        for path in ROOT.glob("tasks/*/probe.jsonl")
        for line in path.read_text().splitlines()
        if line.strip()
    }
    assert probes and not probes & {p.lower() for p in asked}
    with pytest.raises(ValueError, match="distinct replay prompts"):
        replay.prompts(100_000, seed=0)


def write_rows(path: Path, rows: list[dict]) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def payload(
    tmp_path: Path, model_dir: Path, share: float, temperature: float = 1.0, text: float = 0.0
):
    return TrainPayload(
        run_dir=tmp_path / "run",
        model_dir=model_dir,
        train=write_rows(tmp_path / "train.jsonl", triage_rows(8)),
        validation=write_rows(tmp_path / "validation.jsonl", triage_rows(2, seed=1)),
        options=RecipeOptions(max_seq_len=256, batch_size=4, save_steps=100, evaluations=1),
        training=Search(
            search=SearchSpace(
                rank=[4], alpha=[8], learning_rate={"low": 1e-3, "high": 1e-3}, epochs=[1]
            ),
            trials=1,
            seed=3,
        ),
        replay=Replay(share=share, temperature=temperature, max_new_tokens=8, text_share=text),
    )


def test_the_worker_trains_on_the_replay_rows_and_keeps_them_for_a_resume(tmp_path, tiny_model_dir):
    messages: list[dict] = []
    result = train(payload(tmp_path, tiny_model_dir, share=0.5), messages.append)

    assert result.examples["train"] == 8 and result.examples["replay"] == 4
    # 8 task rows + 4 replay rows at batch 4: three steps where the task rows alone take two.
    assert result.trials[0].total_steps == 3
    (made,) = [m for m in messages if m["kind"] == "replay"]
    assert made["asked"] == made["kept"] == 4 and made["reused"] is False
    # Which path the base answered on is recorded: bf16 only where the CPU does it natively.
    assert (made["device"], made["dtype"]) == replay.placement()
    kept = (tmp_path / "run" / replay.FILE).read_text().splitlines()
    header, rows = json.loads(kept[0]), [json.loads(x) for x in kept[1:]]
    assert header == {
        "asked": 4,
        "asked_text": 0,
        "seed": 3,
        "share": 0.5,
        "temperature": 1.0,
        "max_new_tokens": 8,
        "text_share": 0.0,
    }
    assert [r["messages"][0]["content"] for r in rows] == replay.prompts(4, seed=3)
    # Asked as the evaluator asks its probes: no system prompt, the model's own reply.
    assert all([m["role"] for m in r["messages"]] == ["user", "assistant"] for r in rows)
    assert all(r["messages"][1]["content"] for r in rows)

    again, info = replay.for_run(
        tmp_path / "run", tiny_model_dir, (4, 0), 3, Replay(share=0.5, max_new_tokens=8)
    )
    assert info == {"asked": 4, "asked_text": 0, "kept": 4, "reused": True} and again == rows

    # Another replay setting is another set of rows, never the kept one passed off as it.
    other, info = replay.for_run(
        tmp_path / "run",
        tiny_model_dir,
        (4, 0),
        3,
        Replay(share=0.5, temperature=0.7, max_new_tokens=8),
    )
    assert info["reused"] is False and len(other) == 4
    assert (
        json.loads((tmp_path / "run" / replay.FILE).read_text().splitlines()[0])["temperature"]
        == 0.7
    )


def test_without_replay_the_worker_trains_on_the_task_rows_alone(tmp_path, tiny_model_dir):
    messages: list[dict] = []
    result = train(payload(tmp_path, tiny_model_dir, share=0.0), messages.append)
    assert result.examples["replay"] == 0 and result.trials[0].total_steps == 2
    assert not [m for m in messages if m["kind"] == "replay"]
    assert not (tmp_path / "run" / replay.FILE).exists()


def test_plain_text_rows_are_the_bases_continuations_trained_on_every_token(
    tmp_path, tiny_model_dir
):
    """`text_share`: openers the base continues, no chat template, loss on every token."""
    from transformers import AutoTokenizer

    from trainer.data import IGNORE_INDEX, encode_rows

    messages: list[dict] = []
    result = train(payload(tmp_path, tiny_model_dir, share=0.25, text=0.5), messages.append)
    # 8 task rows, 2 chat replay rows and 4 text rows at batch 4: four steps where 8 take two.
    assert result.examples["replay"] == 6 and result.trials[0].total_steps == 4
    (made,) = [m for m in messages if m["kind"] == "replay"]
    assert (made["asked"], made["asked_text"], made["kept"]) == (2, 4, 6)
    kept = [json.loads(x) for x in (tmp_path / "run" / replay.FILE).read_text().splitlines()[1:]]
    texts = [r for r in kept if "text" in r]
    opened = replay.openers(4, seed=3)
    assert len(texts) == 4
    for row, opener in zip(texts, opened, strict=True):
        assert row["text"].startswith(opener) and len(row["text"]) > len(opener)

    tokenizer = AutoTokenizer.from_pretrained(str(tiny_model_dir))
    encoded = encode_rows(tokenizer, texts, max_len=256).examples
    special = set(tokenizer.all_special_ids)
    for e in encoded:
        # Every token is learned but the special ones the tokenizer adds.
        unlearned = [t for t, lab in zip(e.input_ids, e.labels, strict=True) if lab == IGNORE_INDEX]
        assert unlearned == [t for t in e.input_ids if t in special]
    assert all(e.trained_tokens >= 2 for e in encoded)


def test_the_replay_openers_are_distinct_and_none_opens_the_scored_text():
    opened = replay.openers(200, seed=0)
    assert len(set(opened)) == 200 and opened == replay.openers(200, seed=0)
    general = " ".join(p.read_text() for p in ROOT.glob("tasks/*/general.txt"))
    assert not [o for o in opened if o in general]
