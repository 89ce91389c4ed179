"""The ticket-triage demo pack: reproducible, valid, balanced, and its labels follow the rules."""

from __future__ import annotations

import collections
import importlib.util
import json
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from jsonschema import Draft202012Validator

from shared.tasks import load_spec
from shared.tasks.checks import check_files

PACK = Path(__file__).resolve().parents[2] / "tasks" / "ticket-triage"
GENERATED = ("golden.jsonl", "probe.jsonl", "general.txt")
BRANDS = {
    "pos": "tillwise pos",
    "terminal": "tillwise terminal",
    "storefront": "tillwise storefront",
    "inventory": "tillwise inventory",
}


def load_generator():
    # By path, the way other services' tests load it: the pack is data, not a package.
    spec = importlib.util.spec_from_file_location("ticket_triage_generate", PACK / "generate.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def gen():
    return load_generator()


@pytest.fixture(scope="module")
def spec():
    return load_spec(PACK / "spec.yaml")


@pytest.fixture(scope="module")
def golden() -> list[dict]:
    lines = (PACK / "golden.jsonl").read_text(encoding="utf-8").splitlines()
    return [json.loads(line) for line in lines]


def outputs(rows: list[dict]) -> list[dict]:
    return [json.loads(r["output"]) for r in rows]


def test_running_the_script_reproduces_the_checked_in_files_byte_for_byte(tmp_path):
    copy = shutil.copytree(PACK, tmp_path / "pack", ignore=shutil.ignore_patterns(*GENERATED))
    done = subprocess.run(
        [sys.executable, str(copy / "generate.py")], capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0, done.stderr
    for name in GENERATED:
        assert (copy / name).read_bytes() == (PACK / name).read_bytes(), name


def test_make_examples_is_deterministic_and_seed_dependent(gen):
    a, b = gen.make_examples(60, seed=7), gen.make_examples(60, seed=7)
    assert a == b
    assert a != gen.make_examples(60, seed=8)
    assert [sorted(r) for r in a] == [["id", "input", "negative", "output", "use_case"]] * 60
    assert len({r["id"] for r in a}) == len({r["input"] for r in a}) == 60


def test_golden_set_passes_the_apply_checks(spec):
    files = check_files(spec, PACK / "spec.yaml")
    assert files.golden_rows >= 240 and files.probe and files.general


def test_golden_rows_are_valid_against_the_schema(golden, spec):
    on_disk = json.loads((PACK / "schema.json").read_text())
    assert spec.output_schema == on_disk
    validator = Draft202012Validator(on_disk)
    for row in golden:
        assert list(validator.iter_errors(json.loads(row["output"]))) == [], row["id"]


def test_every_slice_is_present_in_proportion(golden, spec):
    assert len(golden) >= 200
    counts = collections.Counter("negative" if r["negative"] else r["use_case"] for r in golden)
    assert set(counts) == set(spec.slices)
    positives = len(golden) - counts["negative"]
    total_weight = sum(u.weight for u in spec.use_cases)
    for use_case in spec.use_cases:
        expected = positives * use_case.weight / total_weight
        assert abs(counts[use_case.name] - expected) <= 1, use_case.name


def test_negative_share_matches_the_spec(golden, spec):
    share = sum(r["negative"] for r in golden) / len(golden)
    assert abs(share - spec.negatives.share) <= 1 / len(golden)


def test_negatives_are_recognisable_refusals_and_only_negatives_are(golden, spec):
    for row, out in zip(golden, outputs(golden), strict=True):
        refusal = all(out[k] == v for k, v in spec.negatives.expected.items())
        assert refusal == row["negative"], row["id"]
        if row["negative"]:
            assert (out["priority"], out["product"]) == ("low", "none"), row["id"]


def test_labels_follow_the_rules_in_the_instructions(golden):
    for row, out in zip(golden, outputs(golden), strict=True):
        text = row["input"].lower()
        if out["priority"] == "urgent":
            assert out["needs_human"], row["id"]
        if out["product"] in BRANDS:
            assert BRANDS[out["product"]] in text, row["id"]
        if not row["negative"]:
            assert out["category"] == row["use_case"], row["id"]


def test_every_label_value_is_used(golden, spec):
    seen = collections.defaultdict(set)
    for out in outputs(golden):
        for key, value in out.items():
            seen[key].add(value)
    for key, prop in spec.output_schema["properties"].items():
        values = set(prop.get("enum", [True, False]))
        assert seen[key] == values, key


STOPWORDS = {
    "en": "the we our is not it and to you i my of in for can this",
    "de": "ich wir und nicht bitte ihr euch sie der die das ist mit ein eine zu unser",
    "fr": "nous je est pas les une vous merci votre le il du pour sur notre ne",
    "es": "nuestro nuestra por los las una nos su el que no en es con mi para",
}


def guess_language(text: str) -> str:
    words = re.findall(r"[a-zà-ÿ]+", text.lower())
    scores = {lang: sum(w in stop.split() for w in words) for lang, stop in STOPWORDS.items()}
    return max(scores, key=lambda lang: (scores[lang], lang == "en"))


def test_languages_look_like_their_label(golden):
    # An independent check of the composition: the most frequent function words agree.
    wrong = [
        (out["language"], row["input"])
        for row, out in zip(golden, outputs(golden), strict=True)
        if guess_language(row["input"].split("\n\n", 1)[1]) != out["language"]
    ]
    assert wrong == []


def test_seed_examples_follow_the_schema(spec):
    validator = Draft202012Validator(spec.output_schema)
    assert 3 <= len(spec.seed_examples) <= 6
    for example in spec.seed_examples:
        assert list(validator.iter_errors(json.loads(example.output))) == []


def _solve(probe: dict, gen) -> str:
    """Recompute a probe's answer from its prompt alone."""
    prompt, kind = probe["prompt"], probe["kind"]
    if kind == "arithmetic":
        a, op, b = re.match(r"What is (\d+) ([-+*]) (\d+)\?", prompt).groups()
        return str({"+": int(a) + int(b), "-": int(a) - int(b), "*": int(a) * int(b)}[op])
    if kind == "conversion":
        small, k, big = re.match(r"How many (\w+) are there in (\d+) (\w+)\?", prompt).groups()
        [factor] = [f for b, s, f in gen.CONVERSIONS if (b, s) == (big, small)]
        return str(int(k) * factor)
    if kind == "capital":
        return gen.CAPITALS[re.match(r"What is the capital city of (.+)\?", prompt).group(1)]
    words = re.findall(r"'(\w+)'", prompt)
    if "backwards" in prompt:
        return words[0][::-1]
    if "How many letters" in prompt:
        return str(len(words[0]))
    if "alphabetical" in prompt:
        return min(words)
    return "-".join(re.match(r"Join the words (\w+), (\w+) and (\w+)", prompt).groups())


def test_probe_answers_are_verifiable(gen):
    probes = [json.loads(line) for line in (PACK / "probe.jsonl").read_text().splitlines()]
    assert len(probes) >= 40
    assert len({p["id"] for p in probes}) == len({p["prompt"] for p in probes}) == len(probes)
    assert {p["kind"] for p in probes} == {"arithmetic", "conversion", "capital", "string"}
    for probe in probes:
        assert sorted(probe) == ["answer", "id", "kind", "prompt"]
        assert _solve(probe, gen) == probe["answer"], probe


def test_general_text_is_plain_english_prose_unrelated_to_the_task():
    text = (PACK / "general.txt").read_text(encoding="utf-8")
    assert len(text.encode()) >= 3000 and text.isascii()
    assert "tillwise" not in text.lower() and "ticket" not in text.lower()
    assert len(text.split("\n\n")) >= 6


def test_the_longest_example_fits_the_students_context(spec, golden, smollm2_tokenizer_dir):
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(str(smollm2_tokenizer_dir))
    longest = max(golden, key=lambda r: len(r["input"]))
    messages = [
        {"role": "system", "content": spec.instructions},
        {"role": "user", "content": longest["input"]},
        {"role": "assistant", "content": longest["output"]},
    ]
    text = tokenizer.apply_chat_template(messages, tokenize=False)
    tokens = len(tokenizer(text)["input_ids"])
    # Headroom for teacher-written tickets, which may run longer than the golden ones.
    assert tokens <= spec.student.max_seq_len * 0.85, tokens
