"""The ticket-triage demo pack: reproducible, valid, balanced, and its labels follow the rules;
its synthetic split (the stand-in teacher's training tickets) never quotes the golden set."""

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

from curation.decontam import GoldenIndex
from curation.normalize import word_tokens
from shared.tasks import load_spec
from shared.tasks.checks import check_files

PACK = Path(__file__).resolve().parents[2] / "tasks" / "ticket-triage"
GENERATED = ("golden.jsonl", "probe.jsonl", "general.txt")
SYNTHETIC_ROWS = 400
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


@pytest.fixture(scope="module")
def synthetic(gen) -> list[dict]:
    return gen.make_examples(SYNTHETIC_ROWS, seed=7, split="synthetic")


@pytest.fixture(params=["golden", "synthetic"])
def rows(request, golden, synthetic) -> list[dict]:
    """Both splits must hold every invariant: the same grammar and labels, other words."""
    return {"golden": golden, "synthetic": synthetic}[request.param]


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


def texts(node, languages: set[str], key: str = "") -> list[str]:
    """Every text of a fragments tree: the items of the lists filed under a language code."""
    if isinstance(node, dict):
        return [t for k, v in node.items() for t in texts(v, languages, k)]
    if isinstance(node, list) and key in languages:
        return list(node)
    if isinstance(node, list):
        return [t for v in node for t in texts(v, languages, key)]
    return []


def shape(node, languages: set[str], key: str = ""):
    """The tree with each text list reduced to whether it has any text: entries and labels."""
    if isinstance(node, dict):
        return {k: shape(v, languages, k) for k, v in node.items()}
    if isinstance(node, list) and key in languages:
        return bool(node)
    if isinstance(node, list):
        return [shape(v, languages, key) for v in node]
    return node


def test_the_splits_use_disjoint_halves_of_every_text_list_and_the_same_entries(gen):
    languages = set(gen.fragments()["languages"])
    golden, synthetic = gen.pool("golden"), gen.pool("synthetic")
    assert set(texts(golden, languages)).isdisjoint(texts(synthetic, languages))
    both = texts(golden, languages) + texts(synthetic, languages)
    # fragments_synthetic.yaml's impact sentences reach the synthetic split only.
    extra = texts({"impacts": gen.synthetic_impacts()}, languages)
    assert extra and set(extra) <= set(texts(synthetic, languages))
    assert sorted(both) == sorted(texts(gen.fragments(), languages) + extra)
    # Same issues, priorities, products, negatives and weights; every text list non-empty.
    assert shape(golden, languages) == shape(synthetic, languages)
    assert shape(golden, languages) == shape(gen.fragments(), languages)


def test_no_synthetic_fragment_shares_a_decontamination_ngram_with_a_golden_one(gen, spec):
    n = spec.curation.decontamination_ngram
    languages = set(gen.fragments()["languages"])

    def grams(text: str) -> set[tuple[str, ...]]:
        words = word_tokens(text)
        return {tuple(words[i : i + n]) for i in range(len(words) - n + 1)}

    golden = set().union(*(grams(t) for t in texts(gen.pool("golden"), languages)))
    shared = [t for t in texts(gen.pool("synthetic"), languages) if grams(t) & golden]
    assert shared == []


def test_the_splits_differ_and_an_unknown_split_is_refused(gen):
    golden = gen.make_examples(60, seed=7)
    assert golden == gen.make_examples(60, seed=7, split="golden")
    synthetic = gen.make_examples(60, seed=7, split="synthetic")
    assert {r["input"] for r in golden}.isdisjoint(r["input"] for r in synthetic)
    with pytest.raises(ValueError, match="split"):
        gen.make_examples(10, seed=7, split="train")


def test_the_synthetic_split_has_room_for_the_stand_in_teachers_pool(gen):
    # teacher.py serves 2000 synthetic tickets; inputs are unique within one call.
    assert len(gen.make_examples(2000, seed=7, split="synthetic")) == 2000


def test_synthetic_tickets_pass_curations_decontamination(synthetic, golden, spec):
    """What curation does to the stand-in teacher's tickets: match each row (input and
    output) against the golden inputs' word n-grams at the spec's n."""
    n = spec.curation.decontamination_ngram
    index = GoldenIndex(((r["id"], r["input"]) for r in golden), n)
    hits = [(r["input"], hit) for r in synthetic if (hit := index.match(r["input"], r["output"]))]
    # Measured: 0 of 400. Before the two pools: 341 of 400 (85 %).
    assert len(hits) / len(synthetic) < 0.05, hits[:3]


def test_seed_examples_do_not_quote_the_golden_set(spec, golden):
    # The teacher sees them as examples; one that echoes them must not echo the golden set.
    index = GoldenIndex(
        ((r["id"], r["input"]) for r in golden), spec.curation.decontamination_ngram
    )
    assert [index.match(e.input) for e in spec.seed_examples] == [None] * len(spec.seed_examples)


def test_each_issue_text_names_exactly_its_product(gen):
    # A fragment implies the labels of its entry: the product's brand is in every body, and
    # no other product's brand is in the entry's subjects or bodies.
    f = gen.fragments()
    brands = {k: v for k, v in f["products"].items() if k != "none"}
    for issue in f["issues"]:
        own = issue["product"]
        for lang in f["languages"]:
            for body in issue["body"][lang]:
                if own == "slot":
                    assert "{product}" in body, body
                elif own != "none":
                    assert brands[own] in body, body
            for text in issue["body"][lang] + issue["subject"][lang]:
                assert not any(b in text for k, b in brands.items() if k != own), text
    tone = ("greetings", "closings", "signoffs", "names", "context", "angry", "extras")
    languages = set(f["languages"])
    for text in texts({k: f[k] for k in tone}, languages) + texts(f["negatives"], languages):
        assert not any(b in text for b in brands.values()), text


def test_golden_set_passes_the_apply_checks(spec):
    files = check_files(spec, PACK / "spec.yaml")
    assert files.golden_rows >= 240 and files.probe and files.general


def test_rows_are_valid_against_the_schema(rows, spec):
    on_disk = json.loads((PACK / "schema.json").read_text())
    assert spec.output_schema == on_disk
    validator = Draft202012Validator(on_disk)
    for row in rows:
        assert list(validator.iter_errors(json.loads(row["output"]))) == [], row["id"]


def test_every_slice_is_present_in_proportion(rows, spec):
    assert len(rows) >= 200
    counts = collections.Counter("negative" if r["negative"] else r["use_case"] for r in rows)
    assert set(counts) == set(spec.slices)
    positives = len(rows) - counts["negative"]
    total_weight = sum(u.weight for u in spec.use_cases)
    for use_case in spec.use_cases:
        expected = positives * use_case.weight / total_weight
        assert abs(counts[use_case.name] - expected) <= 1, use_case.name


def test_negative_share_matches_the_spec(rows, spec):
    share = sum(r["negative"] for r in rows) / len(rows)
    assert abs(share - spec.negatives.share) <= 1 / len(rows)


def test_negatives_are_recognisable_refusals_and_only_negatives_are(rows, spec):
    for row, out in zip(rows, outputs(rows), strict=True):
        refusal = all(out[k] == v for k, v in spec.negatives.expected.items())
        assert refusal == row["negative"], row["id"]
        if row["negative"]:
            assert (out["priority"], out["product"]) == ("low", "none"), row["id"]


def test_labels_follow_the_rules_in_the_instructions(rows):
    for row, out in zip(rows, outputs(rows), strict=True):
        text = row["input"].lower()
        if out["priority"] == "urgent":
            assert out["needs_human"], row["id"]
        if out["product"] in BRANDS:
            assert BRANDS[out["product"]] in text, row["id"]
        if not row["negative"]:
            assert out["category"] == row["use_case"], row["id"]


def test_every_label_value_is_used(rows, spec):
    seen = collections.defaultdict(set)
    for out in outputs(rows):
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


def test_languages_look_like_their_label(rows):
    # An independent check of the composition: the most frequent function words agree.
    wrong = [
        (out["language"], row["input"])
        for row, out in zip(rows, outputs(rows), strict=True)
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
        {"role": "system", "content": spec.student_prompt},
        {"role": "user", "content": longest["input"]},
        {"role": "assistant", "content": longest["output"]},
    ]
    text = tokenizer.apply_chat_template(messages, tokenize=False)
    tokens = len(tokenizer(text)["input_ids"])
    # Headroom for teacher-written tickets, which may run longer than the golden ones.
    assert tokens <= spec.student.max_seq_len * 0.85, tokens


def test_the_stand_in_teachers_latency_is_simulated_said_so_and_configurable():
    spec = importlib.util.spec_from_file_location("ticket_triage_teacher", PACK / "teacher.py")
    teacher = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(teacher)
    from fastapi.testclient import TestClient

    model = teacher.SimulatedLatency(ttft_ms=20.0, tokens_per_s=1000.0, seed=3)
    waits = [model.seconds(25) for _ in range(400)]
    # Log-normal around the median time to first token, plus the tokens at the stated rate.
    median = sorted(waits)[200]
    assert median == pytest.approx(0.020 + 0.025, rel=0.1)
    assert all(w > 0.025 for w in waits) and max(waits) < 0.2

    stand_in = teacher.StandInTeacher([], teacher.golden_rows()[:1])
    row = teacher.golden_rows()[0]
    body = {"messages": [{"role": "user", "content": row["input"]}]}
    timed = TestClient(teacher.create_app(stand_in, model)).post("/v1/chat/completions", json=body)
    assert timed.status_code == 200 and float(timed.headers["x-simulated-latency-ms"]) > 10
    assert timed.json()["choices"][0]["message"]["content"] == row["output"]
    plain = TestClient(teacher.create_app(stand_in)).post("/v1/chat/completions", json=body)
    assert "x-simulated-latency-ms" not in plain.headers
