"""The student prompt is used for the student's training, evaluation and serving, and never for
the teacher (ARCHITECTURE §3b): the demo pack applied for real (its base model imported), the
synth stage against the scripted teacher, which records every request, then the curation stage
on its batch, then the trainer's checks and the adapter manifest's serving metadata.

Then the curation stage alone, with SmolLM2's tokenizer: a row too long for
`student.max_seq_len` (counted as the trainer encodes it) is rejected whole, not cut.

The evaluator's half (the student asked with the student prompt, the teacher with the full
instructions) belongs to the evaluator and is marked below as not written yet.
"""

from __future__ import annotations

import asyncio
import hashlib
import importlib.util
import json
import random
import shutil
import uuid
from pathlib import Path

import yaml

from shared.artifacts import AsyncArtifactStore, LocalArtifactStore
from shared.db import Database
from shared.events.base import ArtifactRef
from shared.events.catalog import CycleFailed, CycleRequested, DatasetPublished, SynthCompleted
from shared.models import store_model_dir
from shared.tasks import spec_from_json
from shared.tasks.registry import apply_spec, register_base_model
from tests.fixtures.teacher_server import running
from tests.integration import test_curation_service as curation_stage
from tests.integration import test_synth_service as synth_stage
from trainer.domain import dataset_prompt_refusal, rows_prompt_refusal, serving_extra

PACK = Path(__file__).resolve().parents[2] / "tasks" / "ticket-triage"


def synthetic_pool() -> list[dict]:
    """Tickets of the pack's synthetic split: none shares a sentence with its golden set."""
    loader = importlib.util.spec_from_file_location("ticket_triage_generate", PACK / "generate.py")
    generate = importlib.util.module_from_spec(loader)
    loader.loader.exec_module(generate)
    return generate.make_examples(200, 3, split="synthetic")


async def test_the_student_prompt_trains_and_serves_the_student_and_never_reaches_the_teacher(
    sqlite_db: Database, tmp_path: Path, tiny_model_dir: Path
):
    store = AsyncArtifactStore(LocalArtifactStore(tmp_path / "artifacts"))
    base = await asyncio.to_thread(store_model_dir, store.sync, tiny_model_dir, "tiny")
    await register_base_model(sqlite_db, "smollm2-135m-instruct", base, "test")
    pack = Path(shutil.copytree(PACK, tmp_path / "ticket-triage")) / "spec.yaml"
    with running(synthetic_pool()) as teacher:
        data = yaml.safe_load(pack.read_text(encoding="utf-8"))
        data["teacher"]["base_url"] = teacher.url
        data["synthesis"]["examples"] = 12
        pack.write_text(yaml.safe_dump(data, sort_keys=False, allow_unicode=True))
        applied = await apply_spec(sqlite_db, store, pack)
        # Every service reads the stored spec; the checks below use it too.
        spec = spec_from_json(await store.get_bytes(applied.spec_ref))
        assert spec.student_prompt != spec.instructions
        cycle = CycleRequested(
            cycle_id=uuid.uuid4(),
            producer="test",
            task_name=spec.name,
            task_version=applied.version,
            task_spec=applied.spec_ref,
        )
        synth = synth_stage.deps(sqlite_db, store)
        assert await synth_stage.deliver(synth, cycle) == "acked"

    # The teacher: its production calls carry the full instructions, and no request it ever
    # got (writing an input, answering, repairing) carries the student prompt.
    answers = [s.body["messages"] for s in teacher.requests if s.kind in {"answer", "repair"}]
    assert len(answers) >= 12
    assert all(m[0] == {"role": "system", "content": spec.instructions} for m in answers)
    written = [s.body["messages"] for s in teacher.requests if s.kind == "input"]
    assert all(spec.instructions in m[1]["content"] for m in written)
    everything = [m["content"] for s in teacher.requests for m in s.body["messages"]]
    assert not [c for c in everything if spec.student_prompt in c]

    # Training data: curation renders every row with the student prompt and names it.
    [done] = await synth_stage.staged(sqlite_db, SynthCompleted)
    curation = curation_stage.deps(sqlite_db, store)
    assert await curation_stage.deliver(curation, done) == "acked"
    [published] = await curation_stage.outbox(sqlite_db, DatasetPublished)
    assert published.train_examples >= 8
    rows = []
    for ref in (published.train, published.validation):
        rows += [json.loads(line) for line in (await store.get_bytes(ref)).decode().splitlines()]
    assert {r["messages"][0]["content"] for r in rows} == {spec.student_prompt}
    assert not [r for r in rows if spec.instructions in json.dumps(r)]
    manifest = json.loads(await store.get_bytes(published.manifest))
    assert manifest["sequence"]["tokenizer"] == base.sha256
    assert manifest["sequence"]["longest"] <= spec.student.max_seq_len

    # The trainer: it accepts this dataset, would refuse it rendered with the instructions, and
    # stores the prompt (and the schema) in the adapter manifest for whoever serves it.
    assert dataset_prompt_refusal(spec, manifest) is None
    assert rows_prompt_refusal(spec, rows) is None
    teacher_rows = [
        {**r, "messages": [{"role": "system", "content": spec.instructions}, *r["messages"][1:]]}
        for r in rows
    ]
    assert rows_prompt_refusal(spec, teacher_rows) is not None
    extra = serving_extra(spec)
    assert extra["student_prompt"] == manifest["student_prompt"]
    assert extra["student_prompt"]["text"] == spec.student_prompt
    assert extra["output_schema"]["schema"] == spec.output_schema


async def test_rows_are_rendered_with_the_student_prompt_and_an_overlong_row_is_rejected(
    db: Database, tmp_path: Path, tiny_model_dir: Path
):
    from transformers import AutoTokenizer

    from trainer.data import encode

    artifacts = curation_stage.store(tmp_path)
    base = await asyncio.to_thread(store_model_dir, artifacts.sync, tiny_model_dir, "tiny")
    student = {"base_model": "tiny", "base_model_ref": base.model_dump(mode="json")}
    spec_ref = await curation_stage.apply_spec(artifacts, student={**student, "max_seq_len": 96})
    spec = spec_from_json(await artifacts.get_bytes(spec_ref))
    rows = curation_stage.synth_rows(20)
    rnd = random.Random(5)
    text = "Ticket 999: " + " ".join(rnd.choice(curation_stage.WORDS) for _ in range(90))
    rows.append({**rows[0], "id": "long", "input": text})
    event = await curation_stage.synth_event(artifacts, spec_ref, rows)

    assert await curation_stage.deliver(curation_stage.deps(db, artifacts), event) == "acked"

    [published] = await curation_stage.outbox(db, DatasetPublished)
    assert published.train_examples + published.validation_examples == 20
    manifest = json.loads(await artifacts.get_bytes(published.manifest))
    assert manifest["counts"]["rejected"] == {"too_many_tokens": 1}
    assert manifest["student_prompt"] == {
        "text": spec.student_prompt,
        "sha256": hashlib.sha256(spec.student_prompt.encode()).hexdigest(),
    }
    [rejected] = [
        json.loads(x)
        for x in (await artifacts.get_bytes(ArtifactRef(**manifest["files"]["rejected"])))
        .decode()
        .splitlines()
    ]
    assert (rejected["id"], rejected["reason"]) == ("long", "too_many_tokens")
    # Counted as the trainer encodes a row (its own code, uncut), with the same tokenizer.
    tokenizer = AutoTokenizer.from_pretrained(str(tiny_model_dir))
    chat = []
    for ref in (published.train, published.validation):
        chat += [json.loads(x) for x in (await artifacts.get_bytes(ref)).decode().splitlines()]
    assert {r["messages"][0]["content"] for r in chat} == {spec.student_prompt}
    lengths = [len(encode(tokenizer, r["messages"], 10**6).input_ids) for r in chat]
    assert max(lengths) <= 96 and manifest["sequence"] == {
        "max_seq_len": 96,
        "tokenizer": base.sha256,
        "longest": max(lengths),
        "too_many_tokens": 1,
    }
    too_long = [
        {"role": "system", "content": spec.student_prompt},
        {"role": "user", "content": rejected["input"]},
        {"role": "assistant", "content": rejected["output"]},
    ]
    assert len(encode(tokenizer, too_long, 10**6).input_ids) > 96
    assert str(len(encode(tokenizer, too_long, 10**6).input_ids)) in rejected["detail"]


async def test_a_batch_no_row_of_which_fits_the_window_ends_the_cycle(
    sqlite_db: Database, tmp_path: Path, tiny_model_dir: Path
):
    artifacts = curation_stage.store(tmp_path)
    base = await asyncio.to_thread(store_model_dir, artifacts.sync, tiny_model_dir, "tiny")
    student = {"base_model": "tiny", "base_model_ref": base.model_dump(mode="json")}
    spec_ref = await curation_stage.apply_spec(artifacts, student={**student, "max_seq_len": 32})
    event = await curation_stage.synth_event(artifacts, spec_ref, curation_stage.synth_rows(6))

    outcome = await curation_stage.deliver(curation_stage.deps(sqlite_db, artifacts), event)

    assert outcome == "dead_lettered_permanent"
    assert await curation_stage.outbox(sqlite_db, DatasetPublished) == []
    [failed] = await curation_stage.outbox(sqlite_db, CycleFailed)
    assert failed.stage == "curation"
    assert "no row fits student.max_seq_len 32: all 6 rows are longer" in failed.reason


async def test_the_evaluator_asks_the_student_with_the_student_prompt_and_the_teacher_with_the_instructions(  # noqa: E501
    sqlite_db, tmp_path
):
    from evaluator.data import GoldenRow
    from evaluator.inputs import Inputs, model_to_run
    from evaluator.results import ArtifactReader, FetchedModel, ResultsCache
    from evaluator.service import Deps, teacher_results
    from evaluator.settings import EvaluatorSettings
    from tests.fixtures.eval_teacher import scripted_teacher

    golden = [
        {"id": "g1", "input": "Subject: till down", "output": "{}", "use_case": "technical"},
        {"id": "g2", "input": "Subject: invoice", "output": "{}", "use_case": "billing"},
    ]
    with scripted_teacher(golden) as server:
        data = yaml.safe_load((PACK / "spec.yaml").read_text())
        spec = spec_from_json(
            json.dumps(
                {
                    **_applied(data),
                    "teacher": {**data["teacher"], "base_url": server.base_url},
                }
            ).encode()
        )
        base = ArtifactRef(uri="file:///b", sha256="b" * 64, size_bytes=1)
        spec = spec.model_copy(
            update={"student": spec.student.model_copy(update={"base_model_ref": base})}
        )
        # The student (the candidate adapter) and every variant: the student prompt.
        candidate = FetchedModel(key="c" * 64, model_dir=tmp_path, adapter_dir=tmp_path)
        assert model_to_run(spec, candidate).system_prompt == spec.student_prompt
        merged = FetchedModel(key="d" * 64, model_dir=tmp_path)
        assert model_to_run(spec, merged).system_prompt == spec.student_prompt
        # The base model: the teacher's instructions (the "no distillation" baseline).
        assert model_to_run(spec, FetchedModel(key=base.sha256, model_dir=tmp_path)).prompt == (
            "instructions"
        )
        artifacts = AsyncArtifactStore(LocalArtifactStore(tmp_path / "store"))
        reader = ArtifactReader(artifacts)
        deps = Deps(
            db=sqlite_db,
            artifacts=artifacts,
            reader=reader,
            cache=ResultsCache(sqlite_db, reader),
            settings=EvaluatorSettings(),
            work_dir=tmp_path,
            operator_hosts=(),
            worker_slots=asyncio.Semaphore(1),
        )
        rows = [GoldenRow.model_validate(r) for r in golden]
        ref = ArtifactRef(uri="file:///g", sha256="a" * 64, size_bytes=1)
        inputs = Inputs(spec, ref, rows, [], None, "setup", uuid.uuid4())
        await teacher_results(deps, inputs)
    assert len(server.requests) == len(golden)
    for messages in server.requests:
        assert messages[0] == {"role": "system", "content": spec.instructions}
        assert all(spec.student_prompt not in m["content"] for m in messages)


def _applied(data: dict) -> dict:
    """The pack's spec as apply stores it: files inlined, paths replaced by refs."""
    ref = {"uri": "file:///x", "sha256": "0" * 64, "size_bytes": 1}
    schema = json.loads((PACK / data["output_schema"]).read_text())
    return {
        **data,
        "output_schema": schema,
        "golden_set": ref,
        "probe_set": ref,
        "general_text": ref,
    }
