"""Curation's filters one by one: normalisation, quality, dedup, PII, decontamination, split."""

from __future__ import annotations

import json
import random
from collections import Counter

import numpy as np
import pytest
from datasketch import MinHash, MinHashLSH

from curation.decontam import GoldenIndex
from curation.dedup import (
    MinHashParams,
    bands,
    candidate_pairs,
    exact_duplicates,
    near_duplicates,
    shingle_hashes,
    signatures,
)
from curation.filters import QualityRules, garbage
from curation.normalize import normalise_output, normalise_text, word_tokens
from curation.split import stratified_split, validation_count
from shared.text.pii import IbanScrubber, iban_valid, luhn_valid, register, scrub

SCHEMA = {
    "type": "object",
    "properties": {"priority": {"enum": ["low", "high", "escalate"]}, "team": {"type": "string"}},
    "required": ["priority", "team"],
    "additionalProperties": False,
}
RULES = QualityRules(5, 200, SCHEMA, {"priority": "escalate"})
GOOD_OUT = '{"priority": "low", "team": "billing desk"}'
GOOD_IN = "My invoice for March shows the wrong amount, please correct it."


# --- normalisation ---------------------------------------------------------------------------


def test_normalise_text_nfc_whitespace_and_controls():
    decomposed = "Cafe\u0301"  # e + combining acute: NFC makes it one code point
    text = f"  {decomposed}\u200b\tbill\x07\r\n\r\n\r\n\r\nline  two\u00a0 end  "
    assert normalise_text(text) == "Caf\u00e9 bill\n\nline two end"


def test_structured_output_is_reserialised_canonically():
    raw = '{"priority":"low",   "team": "  billing\\u200b  desk "}'
    assert normalise_output(raw, structured=True) == GOOD_OUT
    assert normalise_output("not json", structured=True) == "not json"


def test_word_tokens_ascii_fast_path_matches_the_general_one():
    import re
    import unicodedata

    rnd = random.Random(4)
    alphabet = [chr(c) for c in range(128)]
    for _ in range(200):
        text = "".join(rnd.choice(alphabet) for _ in range(60))
        general = re.findall(r"\w+", unicodedata.normalize("NFKC", text).casefold())
        assert word_tokens(text) == general


def test_word_tokens_ignore_case_punctuation_and_width():
    assert word_tokens("Refund, PLEASE! \uff21\uff22\uff23") == word_tokens("refund please abc")


# --- quality ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text_in", "text_out", "negative", "reason"),
    [
        (GOOD_IN, '{"priority": "urgent", "team": "x"}', False, "schema_invalid"),
        (GOOD_IN, '{"priority": "low"}', False, "schema_invalid"),
        (GOOD_IN, "priority: low", False, "schema_invalid"),
        ("Hi", GOOD_OUT, False, "too_short"),
        (GOOD_IN * 10, GOOD_OUT, False, "too_long"),
        (GOOD_IN, "   ", False, "empty"),
        (GOOD_IN, GOOD_OUT, True, "negative_mismatch"),
        ("#### ???? !!!! ~~~~ %%%% ^^", GOOD_OUT, False, "garbage"),
        (GOOD_IN, '{"priority": "low", "team": "' + "a" * 25 + '"}', False, "garbage"),
        ("refund " * 25, GOOD_OUT, False, "garbage"),
    ],
)
def test_quality_rules_name_the_broken_rule(text_in, text_out, negative, reason):
    verdict = RULES.check(text_in, text_out, negative)
    assert verdict is not None and verdict.reason == reason, verdict


def test_quality_rules_pass_good_rows_and_proper_negatives():
    assert RULES.check(GOOD_IN, GOOD_OUT, False) is None
    assert RULES.check(GOOD_IN, '{"priority": "escalate", "team": "none"}', True) is None


def test_garbage_allows_ordinary_text_and_short_enums():
    assert garbage("The printer on floor 3 shows error E-42 (paper jam).") is None
    assert garbage("") is None
    assert garbage("!!!!!!!!!!!!!!!!!!!!") is not None


# --- dedup ------------------------------------------------------------------------------------


def test_exact_duplicates_keep_the_first_and_protected_rows():
    assert exact_duplicates(["a", "b", "a", "a"]) == {2: 0, 3: 0}
    assert exact_duplicates(["a", "a", "a"], protected=2) == {2: 0}


def words(n: int, seed: int) -> list[str]:
    rnd = random.Random(seed)
    return [f"w{rnd.randrange(10_000)}" for _ in range(n)]


def test_signatures_equal_datasketch_minhash_bit_for_bit():
    docs = [words(30, 1), words(5, 2), [], ["solo"]]
    for k in (1, 2, 3):
        hashes, offsets = shingle_hashes(docs, k)
        sig = signatures(hashes, offsets, 64, seed=3)
        for i in range(len(docs)):
            reference = MinHash(num_perm=64, seed=3, hashfunc=lambda x: x)
            reference.update_batch(hashes[offsets[i] : offsets[i + 1]].tolist())
            assert np.array_equal(reference.hashvalues, sig[i])


def test_candidates_equal_datasketch_lsh_queries():
    base = [words(40, s) for s in range(60)]
    docs = base + [[*d[:-2], "x", "y"] for d in base[:20]]
    hashes, offsets = shingle_hashes(docs, 1)
    sig = signatures(hashes, offsets, 128, 1)
    b, r = bands(0.8, 128)
    ours = set(map(tuple, candidate_pairs(sig, b, r, np.ones(len(docs), bool)).tolist()))
    lsh = MinHashLSH(threshold=0.8, num_perm=128)
    sketches = [MinHash(128, hashvalues=s, scheme="affine32") for s in sig]
    for i, m in enumerate(sketches):
        lsh.insert(i, m)
    theirs = {
        (min(i, j), max(i, j)) for i, m in enumerate(sketches) for j in lsh.query(m) if i != j
    }
    # 20 planted pairs at Jaccard 0.9: LSH at 0.8 finds each with probability about 0.97.
    assert ours == theirs and len(ours) >= 17


def test_near_duplicates_respect_the_threshold_exactly():
    # Word sets with no weighting, so the Dice values are easy to count; the placeholder words
    # hold digits, which the fact check would read as differing numbers.
    base = [f"t{i}" for i in range(20)]
    at = [*base[:18], "n1", "n2"]  # 18 shared of 20 + 20 words: Dice 0.9
    above = [*base[:19], "n1"]  # 19 of 20 + 20: 0.95
    far = words(20, 9)
    params = MinHashParams(
        0.92, shingle_words=1, shingle_chars=0, detail_weight=1, check_facts=False
    )
    found = near_duplicates([base, at, above, far], params)
    assert (
        set(found) == {2}
        and found[2].kept == 0
        and found[2].similarity == pytest.approx(0.95, abs=1e-4)
    )
    params = MinHashParams(
        0.9, shingle_words=1, shingle_chars=0, detail_weight=1, check_facts=False
    )
    assert set(near_duplicates([base, at], params)) == {1}


def test_near_duplicates_of_nothing():
    assert near_duplicates([], MinHashParams(0.8)) == {}
    hashes, offsets = shingle_hashes([], 2)
    assert len(hashes) == 0 and list(offsets) == [0]


def test_near_duplicates_never_remove_protected_rows_and_chain_to_kept_ones():
    a = words(30, 1)
    b = [*a[:29], "z"]
    params = MinHashParams(threshold=0.8)
    assert set(near_duplicates([a, b], params, protected=2)) == set()
    # b duplicates a; c duplicates b only; c stays a duplicate of a kept row or none at all.
    c = [*b[:28], "q", "z"]
    found = near_duplicates([a, b, c], params)
    assert all(found[j].kept not in found for j in found)


# --- PII --------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected", "kind"),
    [
        ("write to jane.doe+tickets@mail.example.org today", "write to <EMAIL> today", "EMAIL"),
        ("card 4111 1111 1111 1111 was charged", "card <CARD> was charged", "CARD"),
        ("card 5500-0000-0000-0004 declined", "card <CARD> declined", "CARD"),
        ("IBAN DE89 3704 0044 0532 0130 00 please", "IBAN <IBAN> please", "IBAN"),
        ("to GB82WEST12345698765432.", "to <IBAN>.", "IBAN"),
        ("from 192.168.10.254 at noon", "from <IPV4> at noon", "IPV4"),
        ("host 2001:db8:85a3::8a2e:370:7334 down", "host <IPV6> down", "IPV6"),
        ("call +44 20 7946 0958 now", "call <PHONE> now", "PHONE"),
        ("call (555) 123-4567 now", "call <PHONE> now", "PHONE"),
        ("call 555-123-4567 now", "call <PHONE> now", "PHONE"),
    ],
)
def test_each_pii_kind_is_replaced_and_counted(text, expected, kind):
    assert scrub(text) == (expected, Counter({kind: 1}))


@pytest.mark.parametrize(
    "text",
    [
        "order 4111 1111 1111 1112 is late",  # fails Luhn: an order number, not a card
        "ref DE89 3704 0044 0532 0130 01",  # fails mod-97
        "on 2024-01-15 at 10:30:45 we paid $1,234.56 for #48213",
        "version 1.2.3 of the app",
        "999.10.10.10 is no address",
    ],
)
def test_look_alikes_are_left_alone(text):
    assert scrub(text) == (text, Counter())


def test_checksums():
    assert luhn_valid("4111111111111111") and not luhn_valid("4111111111111112")
    assert iban_valid("DE89370400440532013000") and not iban_valid("DE89370400440532013001")


def test_scrubbers_are_pluggable():
    class Ticket:
        kind = "EMPLOYEE_ID"

        def scrub(self, text: str) -> tuple[str, int]:
            return text.replace("EMP-1234", "<EMPLOYEE_ID>"), text.count("EMP-1234")

    assert scrub("by EMP-1234 and jo@x.io", [Ticket(), IbanScrubber()]) == (
        "by <EMPLOYEE_ID> and jo@x.io",
        Counter({"EMPLOYEE_ID": 1}),
    )
    with pytest.raises(TypeError):
        register(object())  # type: ignore[arg-type]


# --- decontamination --------------------------------------------------------------------------


def test_a_row_sharing_an_ngram_with_a_golden_input_is_contaminated():
    golden = GoldenIndex(
        [
            ("g1", "The export to CSV puts every date in the wrong time zone since Monday."),
            ("g2", "cancel my plan"),
        ],
        n=8,
    )
    quoted = "Hi! the EXPORT to csv puts every date in the wrong, time zone. Fix?"
    assert golden.match(quoted) == ("g1", "the export to csv puts every date in")
    assert golden.match("The export to CSV is slow and dates look odd") is None
    assert golden.match("please CANCEL my plan today")[0] == "g2"  # short golden: whole input
    assert golden.match("cancel my subscription") is None


# --- split ------------------------------------------------------------------------------------


def test_split_is_stratified_and_deterministic():
    rows = [(f"id{i}", "billing" if i % 4 else "outage") for i in range(400)]
    train, validation = stratified_split(rows, 0.1, key=lambda r: r[1], row_id=lambda r: r[0])
    per_slice = Counter(r[1] for r in validation)
    assert per_slice == {"billing": 30, "outage": 10}
    assert len(train) + len(validation) == 400 and not set(train) & set(validation)
    shuffled = rows[::-1]
    assert set(stratified_split(shuffled, 0.1, lambda r: r[1], lambda r: r[0])[1]) == set(
        validation
    )


def test_validation_count_rounds_half_up_and_keeps_a_training_row():
    assert validation_count(25, 0.1) == 3
    assert validation_count(1, 0.5) == 0
    assert validation_count(2, 0.9) == 1


def test_structured_scrub_keeps_json_valid():
    from curation.domain import Row, scrub_row

    row = Row(
        "r",
        "billing",
        False,
        "mail bob@corp.com",
        json.dumps({"priority": "low", "team": "ask bob@corp.com"}),
    )
    clean, counts = scrub_row(row, structured=True, scrubbers=None)
    assert json.loads(clean.output) == {"priority": "low", "team": "ask <EMAIL>"}
    assert counts == {"EMAIL": 2}


def test_small_slices_still_hold_out_one_validation_row():
    rows = [(f"r{i}", f"slice-{i % 3}") for i in range(6)]  # 2 per slice: each rounds to 0
    train, validation = stratified_split(rows, 0.1, key=lambda r: r[1], row_id=lambda r: r[0])
    assert len(validation) == 1 and len(train) == 5
    single = [("only", "a")]
    assert stratified_split(single, 0.1, lambda r: r[1], lambda r: r[0]) == (single, [])
