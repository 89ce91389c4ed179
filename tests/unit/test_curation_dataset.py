"""From rows to a dataset version, without a database: the draft, review decisions, the files
and the manifest, and that the same input gives the same bytes."""

from __future__ import annotations

import hashlib
import json
import random
from dataclasses import replace

import pytest

from curation.decisions import ReviewDecision, apply_decisions, edited_output
from curation.decontam import GoldenIndex
from curation.domain import Draft, Options, Row, curate, select_for_review
from curation.filters import QualityRules
from curation.manifest import TOO_MANY_TOKENS, Window, build_manifest, render
from curation.rows import NotJsonl, parse_chat_rows, parse_rows
from shared.events.base import ArtifactRef

SCHEMA = {
    "type": "object",
    "properties": {"priority": {"enum": ["low", "high", "escalate"]}},
    "required": ["priority"],
}
RULES = QualityRules(1, 4000, SCHEMA, {"priority": "escalate"})
OPTIONS = Options(
    near_duplicate_threshold=0.85,
    min_chars=1,
    max_chars=4000,
    decontamination_ngram=8,
    validation_share=0.2,
    review_share=0.0,
)
VOCAB = [f"word{i}" for i in range(400)]


def ticket(rnd: random.Random) -> str:
    return "Ticket: " + " ".join(rnd.choice(VOCAB) for _ in range(18)) + "."


def rows(n: int, seed: int = 0) -> list[Row]:
    rnd = random.Random(seed)
    out = []
    for i in range(n):
        text = ticket(rnd)
        negative = i % 10 == 0
        output = json.dumps({"priority": "escalate" if negative else "low"})
        use_case = "billing" if i % 2 else "outage"
        out.append(Row(hashlib.sha256(text.encode()).hexdigest(), use_case, negative, text, output))
    return out


def fake_ref(data: bytes) -> ArtifactRef:
    digest = hashlib.sha256(data).hexdigest()
    return ArtifactRef(uri=f"file:///store/{digest}", sha256=digest, size_bytes=len(data))


def publish(draft: Draft, decisions=()) -> bytes:
    final = apply_decisions(draft, list(decisions))
    rendered = render(final, "Triage the ticket.", 0.2)
    refs = {name: fake_ref(data) for name, data in rendered.files.items()}
    return build_manifest(
        task={"name": "triage", "version": 1, "spec": fake_ref(b"spec").model_dump(mode="json")},
        cycle_id="c1",
        iteration=1,
        draft=final,
        rendered=rendered,
        decisions=list(decisions),
        refs=refs,
    )


def test_same_rows_in_any_order_give_the_same_manifest():
    batch = rows(60)
    golden = GoldenIndex([], 8)
    first = curate(batch, RULES, golden, OPTIONS)
    again = curate(list(reversed(batch)), RULES, golden, OPTIONS)
    assert first == again
    assert publish(first) == publish(again)


def test_manifest_counts_slices_pii_and_files():
    batch = rows(50)
    batch[3] = replace(batch[3], input=batch[3].input + " mail ann@example.com")
    batch.append(batch[5])  # exact duplicate
    batch.append(replace(batch[6], id="bad", output="{"))
    draft = curate(batch, RULES, GoldenIndex([], 8), OPTIONS)
    manifest = json.loads(publish(draft))
    assert manifest["counts"] == {
        "input_rows": 52,
        "carried_over": 0,
        "kept_new": 50,
        "rejected": {"exact_duplicate": 1, "schema_invalid": 1},
        "rejected_total": 2,
        "train": 40,
        "validation": 10,
    }
    assert manifest["slices"] == {
        "train": {"billing": 20, "negative": 4, "outage": 16},
        "validation": {"billing": 5, "negative": 1, "outage": 4},
    }
    assert manifest["pii"] == {"EMAIL": 1}
    assert manifest["thresholds"] == {}  # the service fills options into the draft
    assert set(manifest["files"]) == {"train", "rejected", "validation"}
    assert manifest["lineage"] == {"sources": [{}], "previous_dataset": None}


def test_curated_rows_are_chat_rows_that_read_back():
    draft = curate(rows(10), RULES, GoldenIndex([], 8), OPTIONS)
    rendered = render(draft, "Triage the ticket.", 0.2)
    first = json.loads(rendered.files["train"].splitlines()[0])
    assert list(first) == ["id", "use_case", "negative", "messages"]
    assert [m["role"] for m in first["messages"]] == ["system", "user", "assistant"]
    assert first["messages"][0]["content"] == "Triage the ticket."
    back = parse_chat_rows(rendered.files["train"] + rendered.files["validation"])
    assert sorted(back, key=lambda r: r.id) == sorted(draft.kept, key=lambda r: r.id)


def words(messages: list[dict[str, str]]) -> int:
    """A stand-in token count (words of every turn): render's rule, not a tokenizer, is tested
    here; tests/integration/test_curation_service.py counts with SmolLM2's real tokenizer."""
    return sum(len(m["content"].split()) for m in messages)


def test_rows_longer_than_the_window_are_rejected_whole_not_cut():
    batch = rows(20)
    extra = " ".join(f"detail{i}" for i in range(40))
    long = replace(batch[4], id="long", input=f"{batch[4].input} {extra}")
    draft = curate([*batch, long], RULES, GoldenIndex([], 8), OPTIONS)
    prompt = "Task: triage. Reply with JSON."
    # A row here is 5 prompt words + 19 ticket words + 2 answer words = 26 "tokens".
    rendered = render(draft, prompt, 0.2, Window(30, words, "sha-of-base"))
    [rejection] = rendered.too_long
    assert (rejection.row_id, rejection.reason) == ("long", TOO_MANY_TOKENS)
    assert rejection.detail.startswith("66 tokens with the student prompt > student.max_seq_len 30")
    assert rejection.input == long.input and rejection in rendered.rejected
    written = rendered.files["train"] + rendered.files["validation"]
    assert b'"long"' not in written and len(rendered.train) + len(rendered.validation) == 20
    assert [json.loads(x)["reason"] for x in rendered.files["rejected"].splitlines()] == [
        TOO_MANY_TOKENS
    ]
    assert rendered.sequence == {
        "max_seq_len": 30,
        "tokenizer": "sha-of-base",
        "longest": 26,
        TOO_MANY_TOKENS: 1,
    }
    # At exactly the window a row fits; no window (no tokenizer), nothing is counted.
    assert not render(draft, prompt, 0.2, Window(66, words, "b")).too_long
    assert render(draft, prompt, 0.2).sequence is None


def test_the_manifest_names_the_student_prompt_the_rows_carry():
    draft = curate(rows(10), RULES, GoldenIndex([], 8), OPTIONS)
    prompt = "Task: triage. Reply with one JSON object with keys priority."
    rendered = render(draft, prompt, 0.2, Window(512, words, "base-sha"))
    systems = {
        json.loads(line)["messages"][0]["content"]
        for line in (rendered.files["train"] + rendered.files["validation"]).splitlines()
    }
    assert systems == {prompt}
    refs = {name: fake_ref(data) for name, data in rendered.files.items()}
    manifest = json.loads(
        build_manifest(
            task={"name": "triage", "version": 1, "spec": {}},
            cycle_id="c1",
            iteration=1,
            draft=draft,
            rendered=rendered,
            decisions=[],
            refs=refs,
        )
    )
    assert manifest["student_prompt"] == {
        "text": prompt,
        "sha256": hashlib.sha256(prompt.encode()).hexdigest(),
    }
    assert manifest["sequence"]["max_seq_len"] == 512 and manifest["sequence"]["longest"] > 0


def test_review_picks_are_deterministic_and_decisions_apply():
    batch = rows(40)
    draft = curate(batch, RULES, GoldenIndex([], 8), replace(OPTIONS, review_share=0.1))
    assert len(draft.review) == 4
    assert draft.review == select_for_review(list(reversed(draft.kept)), 0.1)
    with pytest.raises(ValueError, match="pending"):
        apply_decisions(draft, [])
    a, b, c, d = draft.review
    edited = edited_output('{"priority":  "high"}', False, RULES)
    final = apply_decisions(
        draft,
        [
            ReviewDecision(a, "approved"),
            ReviewDecision(b, "edited", edited),
            ReviewDecision(c, "rejected", reason="wrong team"),
            ReviewDecision(d, "approved"),
        ],
    )
    assert len(final.kept) == 39
    assert next(r for r in final.kept if r.id == b).output == '{"priority": "high"}'
    assert [(r.row_id, r.reason, r.detail) for r in final.rejected] == [
        (c, "review_rejected", "wrong team")
    ]
    with pytest.raises(ValueError, match="schema_invalid"):
        edited_output('{"priority": "whenever"}', False, RULES)
    with pytest.raises(ValueError, match="negative_mismatch"):
        edited_output('{"priority": "low"}', True, RULES)


def test_carried_rows_win_dedup_and_stay():
    old = rows(20, seed=1)
    new = [*rows(20, seed=2), replace(old[1], id="again", output='{"priority": "high"}')]
    draft = curate(new, RULES, GoldenIndex([], 8), OPTIONS, carried=old)
    assert draft.carried == old
    assert len(draft.kept) == 20
    assert [(r.row_id, r.reason) for r in draft.rejected] == [("again", "exact_duplicate")]


def test_malformed_lines_are_rejected_not_fatal():
    good = {"id": "a", "use_case": "billing", "negative": False, "input": "x", "output": "{}"}
    data = (json.dumps(good) + "\nnot json\n" + json.dumps({"id": "b"}) + "\n\n").encode()
    parsed, bad = parse_rows(data)
    assert [r.id for r in parsed] == ["a"]
    assert [(b.row_id, b.reason) for b in bad] == [("line-2", "malformed"), ("line-3", "malformed")]


@pytest.mark.parametrize(
    ("data", "why"),
    [
        (b'{"id": "a", "input": "caf\xe9"}\n', "not UTF-8"),
        (b"id,input,output\na,x,y\n", "none of its 2 lines is a JSON object"),
        (b"[1, 2]\n", "none of its 1 lines"),
    ],
)
def test_a_batch_that_is_not_jsonl_at_all_is_refused(data: bytes, why: str):
    with pytest.raises(NotJsonl, match=why):
        parse_rows(data)


def test_an_empty_batch_is_no_rows_not_an_error():
    assert parse_rows(b"") == ([], [])


def test_draft_round_trips_through_json():
    draft = curate(rows(15), RULES, GoldenIndex([], 8), replace(OPTIONS, review_share=0.2))
    draft = replace(draft, source={"kind": "synth"}, options={"x": 1})
    assert Draft.from_json(draft.to_json()) == draft
