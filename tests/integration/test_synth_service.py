"""synth-data's stages end to end in process: a real database (SQLite and PostgreSQL), a real
artifact store, the stage template under the real error policy (shared.bus.process, fed by a
fake JetStream message) and a real HTTP teacher: the scripted one
(see tests/fixtures/teacher_server.py)."""

from __future__ import annotations

import importlib.util
import json
import uuid
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import yaml
from sqlalchemy import func, select

from shared.artifacts import AsyncArtifactStore, LocalArtifactStore
from shared.bus import durable_name, process
from shared.db import Database, OutboxRow
from shared.events import ConsumerPolicy, Event
from shared.events.base import ArtifactRef
from shared.events.catalog import (
    Confusion,
    CycleFailed,
    CycleIterationRequested,
    CycleRequested,
    DeadLettered,
    SynthCompleted,
    TaskRegistered,
)
from shared.runtime.stage import handler_for
from shared.tasks import parse_spec
from shared.tasks.registry import register
from shared.tasks.spec import Residency
from synth_data import service
from synth_data.models import SynthResponse
from synth_data.repository import get_run, upsert_run
from synth_data.settings import NAME, SynthDataSettings
from tests.fixtures.teacher_server import ScriptedTeacher, running, toy_spec

POLICY = ConsumerPolicy(max_deliver=5, ack_wait_s=30, backoff_base_s=0.1)
FAST = {"backoff_base_s": 0.01, "backoff_cap_s": 0.05, "max_attempts": 4, "progress_every": 3}


@dataclass
class FakeMessage:
    """The JetStream message port, recording what the policy did with it."""

    body: bytes
    subject: str
    delivery: int = 1
    stream_sequence: int = 1
    calls: list[tuple] = field(default_factory=list)

    async def ack(self) -> None:
        self.calls.append(("ack",))

    async def nack(self, delay: float) -> None:
        self.calls.append(("nack", delay))

    async def reject(self) -> None:
        self.calls.append(("reject",))

    async def in_progress(self) -> None:
        self.calls.append(("in_progress",))


@pytest.fixture
def teacher() -> Iterator[ScriptedTeacher]:
    with running() as scripted:
        yield scripted


@pytest.fixture
def store(tmp_path) -> AsyncArtifactStore:
    return AsyncArtifactStore(LocalArtifactStore(tmp_path / "artifacts"))


def deps(db: Database, store: AsyncArtifactStore, **settings: Any) -> service.Deps:
    return service.Deps(db, store, SynthDataSettings(**{**FAST, **settings}))


async def put_spec(db: Database, store: AsyncArtifactStore, data: dict[str, Any]) -> ArtifactRef:
    """Store the spec and register it in the task registry, as `distillery task apply` does
    after its file checks (synth-data resolves specs from the registry only)."""
    spec = parse_spec(data)
    ref = await store.put_bytes(spec.model_dump_json().encode(), media_type="application/json")
    await register(db, spec.name, ref)
    return ref


async def completed_run(
    db: Database, cycle_id: uuid.UUID, iteration: int, version: int = 1, status: str = "completed"
):
    """The record of a synth run that ended, as the cycle's earlier iteration leaves it."""
    async with db.uow() as uow:
        await upsert_run(
            uow.session,
            db.dialect,
            str(cycle_id),
            iteration,
            event_id=str(uuid.uuid4()),
            task_name="toy-triage",
            task_version=version,
            status=status,
        )
        await uow.commit()


def cycle(ref: ArtifactRef | None, cycle_id: uuid.UUID | None = None, **extra) -> CycleRequested:
    pinned = {"task_spec": ref, "task_version": 1} if ref else {}
    fields = {"task_name": "toy-triage", **pinned, **extra}
    return CycleRequested(cycle_id=cycle_id or uuid.uuid4(), producer="test", **fields)


async def deliver(d: service.Deps, event: Event, number: int = 1) -> str:
    """One delivery to the stage that consumes `event`, exactly as the service subscribes it."""
    [stage] = [s for s in service.stages(d) if s.consumes is type(event)]
    # One stream sequence per event, shared by its redeliveries, as JetStream numbers them.
    sequence = event.event_id.int % 2**63
    message = FakeMessage(event.model_dump_json().encode(), event.subject, number, sequence)
    return await process(
        message,
        type(event),
        handler_for(stage, service=NAME, db=d.db),
        service=NAME,
        consumer=durable_name(NAME, type(event)),
        db=d.db,
        policy=POLICY,
    )


async def staged(db: Database, cls: type[Event]) -> list[Any]:
    async with db.uow() as uow:
        rows = await uow.session.scalars(
            select(OutboxRow.payload).where(OutboxRow.subject == cls.subject).order_by(OutboxRow.id)
        )
        return [cls.model_validate_json(r) for r in rows]


async def jsonl(store: AsyncArtifactStore, ref: ArtifactRef) -> list[dict[str, Any]]:
    return [json.loads(line) for line in (await store.get_bytes(ref)).decode().splitlines()]


async def test_cycle_yields_a_batch_and_synth_completed(db, store, teacher):
    data = toy_spec(
        teacher.url,
        teacher={"price_per_1k_prompt_tokens": 1.0, "price_per_1k_completion_tokens": 2.0},
    )
    ref = await put_spec(db, store, data)
    d = deps(db, store)
    event = cycle(ref)

    assert await deliver(d, event) == "acked"

    [done] = await staged(db, SynthCompleted)
    assert done.causation_id == event.event_id and done.cycle_id == event.cycle_id
    assert done.event_id == service.answer_id(event, SynthCompleted)  # a redelivery re-stages it
    assert (done.task_name, done.task_version, done.task_spec, done.iteration) == (
        "toy-triage",
        1,
        ref,
        1,
    )
    assert done.examples == 10
    assert done.examples_per_slice == {"account": 2, "billing": 4, "negative": 2, "outage": 2}
    assert done.prompt_tokens > 0 and done.completion_tokens > 0
    expected_cost = (done.prompt_tokens * 1.0 + done.completion_tokens * 2.0) / 1000
    assert done.cost_usd == pytest.approx(expected_cost)
    rows = await jsonl(store, done.batch)
    truth = {r["input"]: r["output"] for r in teacher.pool}
    assert [r["output"] for r in rows] == [truth[r["input"]] for r in rows]
    assert sum(r["prompt_tokens"] for r in rows) == done.prompt_tokens
    assert {r["iteration"] for r in rows} == {1}
    assert all(r["edge_case"] is None for r in rows if r["negative"])
    assert teacher.counts() == {"input": 10, "answer": 10}

    run = await get_run(db, str(event.cycle_id))
    assert (run.status, run.total, run.done, run.accepted, run.rejected) == (
        "completed",
        10,
        10,
        10,
        0,
    )
    assert (run.requests, run.cache_hits, run.batch_sha256) == (20, 0, done.batch.sha256)
    assert run.prompt_tokens == done.prompt_tokens and run.cost_usd == done.cost_usd


async def test_redelivery_after_a_crash_reuses_the_cache_and_answers_once(db, store, teacher):
    ref = await put_spec(db, store, toy_spec(teacher.url))
    d = deps(db, store, max_attempts=2)
    event = cycle(ref)
    # The teacher breaks half-way: the first delivery gives up and is retried later.
    teacher.fail_next(50, status=500, after=12)
    assert await deliver(d, event) == "retried"
    assert await staged(db, SynthCompleted) == []
    half = await get_run(db, str(event.cycle_id))
    assert half.status == "running" and half.done < half.total
    async with db.uow() as uow:
        paid = await uow.session.scalar(select(func.count()).select_from(SynthResponse))
    # Answers in flight when the job gave up may be lost; at most the 12 good ones were kept.
    assert 10 <= paid <= 12

    teacher.clear_faults()
    assert await deliver(d, event, number=2) == "acked"
    run = await get_run(db, str(event.cycle_id))
    assert run.cache_hits == paid and run.requests == 20 - paid
    assert await deliver(d, event, number=3) == "acked"  # after the commit: nothing again
    [done] = await staged(db, SynthCompleted)

    # The same cycle asked again (a new event) costs nothing and yields the same bytes.
    before = len(teacher.requests)
    assert await deliver(d, cycle(ref, cycle_id=event.cycle_id)) == "acked"
    assert len(teacher.requests) == before
    again = (await staged(db, SynthCompleted))[-1]
    assert again.batch == done.batch
    rerun = await get_run(db, str(event.cycle_id))
    assert (rerun.requests, rerun.cache_hits) == (0, 20)
    assert rerun.prompt_tokens == run.prompt_tokens  # the ledger counts what was paid, once


async def test_residency_violation_is_refused_before_any_request(db, store, teacher):
    ref = await put_spec(db, store, toy_spec(teacher.url))
    d = deps(db, store, allowed_teacher_hosts=["llm.eu.internal"])
    event = cycle(ref)

    # Retrying cannot change an allow-list: the stage gives up on the first delivery.
    assert await deliver(d, event) == "dead_lettered_permanent"

    [failed] = await staged(db, CycleFailed)
    assert failed.stage == "synth" and failed.causation_id == event.event_id
    assert "'127.0.0.1'" in failed.reason and "['llm.eu.internal']" in failed.reason
    [letter] = await staged(db, DeadLettered)
    assert letter.error_kind == "permanent" and letter.reason == failed.reason
    assert await staged(db, SynthCompleted) == []
    assert teacher.requests == []
    run = await get_run(db, str(event.cycle_id))
    assert run.status == "failed" and run.reason == failed.reason
    # Redelivered (the terminate was lost): the give-up is not written twice.
    assert await deliver(d, event, number=2) == "acked"
    assert len(await staged(db, CycleFailed)) == 1 and len(await staged(db, DeadLettered)) == 1


async def test_stored_spec_outside_its_own_allow_list_fails_the_cycle(sqlite_db, store, teacher):
    spec = parse_spec(toy_spec(teacher.url))
    # model_copy does not validate: this is a spec written by something that skipped the check.
    bad = spec.model_copy(update={"residency": Residency(allowed_teacher_hosts=["api.eu.example"])})
    ref = await store.put_bytes(bad.model_dump_json().encode(), media_type="application/json")
    await register(sqlite_db, bad.name, ref)

    assert await deliver(deps(sqlite_db, store), cycle(ref)) == "dead_lettered_permanent"

    [failed] = await staged(sqlite_db, CycleFailed)
    assert "'127.0.0.1'" in failed.reason and "api.eu.example" in failed.reason
    assert teacher.requests == []


async def test_malformed_output_is_repaired(sqlite_db, store, teacher):
    teacher.answer = lambda _, right, n: "Sure! It is about billing." if n == 0 else right
    ref = await put_spec(sqlite_db, store, toy_spec(teacher.url))

    assert await deliver(deps(sqlite_db, store), cycle(ref)) == "acked"

    [done] = await staged(sqlite_db, SynthCompleted)
    assert done.examples == 10
    assert teacher.counts() == {"input": 10, "answer": 10, "repair": 10}
    repair = next(s.body for s in teacher.requests if s.kind == "repair")
    assert repair["messages"][2] == {"role": "assistant", "content": "Sure! It is about billing."}
    assert "not JSON" in repair["messages"][3]["content"]


async def test_unrepairable_output_is_rejected_with_reasons(sqlite_db, store, teacher):
    teacher.answer = lambda *_: '{"label": "refund", "urgent": true}'
    ref = await put_spec(sqlite_db, store, toy_spec(teacher.url))
    event = cycle(ref)

    assert await deliver(deps(sqlite_db, store), event) == "acked"

    [failed] = await staged(sqlite_db, CycleFailed)
    assert failed.reason == "no example passed: 10 planned, rejected by reason: schema: 10"
    assert failed.stage == "synth" and failed.event_id == service.answer_id(event, CycleFailed)
    assert await staged(sqlite_db, DeadLettered) == []  # an answer, not a give-up
    run = await get_run(sqlite_db, str(event.cycle_id))
    assert run.status == "failed" and run.reason == failed.reason
    assert json.loads(run.stats)["rejected_by_reason"] == {"schema": 10}
    rows = await jsonl(store, run.rejected_ref())
    assert len(rows) == 10
    assert all(r["reason"].startswith("schema: $.label: 'refund' is not one of") for r in rows)
    assert all(r["answer"] == '{"label": "refund", "urgent": true}' for r in rows)


async def test_negatives_must_be_declined(sqlite_db, store, teacher):
    teacher.answer = lambda _, right, n: right.replace('"unknown"', '"billing"')
    ref = await put_spec(sqlite_db, store, toy_spec(teacher.url))
    event = cycle(ref)

    assert await deliver(deps(sqlite_db, store), event) == "acked"

    [done] = await staged(sqlite_db, SynthCompleted)
    assert done.examples == 8 and "negative" not in done.examples_per_slice
    run = await get_run(sqlite_db, str(event.cycle_id))
    assert json.loads(run.stats)["rejected_by_reason"] == {"negative not declined": 2}


async def test_429_and_5xx_are_retried_with_backoff(db, store, teacher):
    teacher.fail_next(2, status=429, retry_after="0")
    teacher.fail_next(2, status=503)
    teacher.fail_next(1, status=500)
    ref = await put_spec(db, store, toy_spec(teacher.url))
    event = cycle(ref)

    assert await deliver(deps(db, store), event) == "acked"

    [done] = await staged(db, SynthCompleted)
    assert done.examples == 10
    assert teacher.counts() == {"input": 10, "answer": 10, "fault": 5}
    run = await get_run(db, str(event.cycle_id))
    assert run.retries == 5 and run.requests == 25


async def test_a_teacher_that_refuses_us_fails_the_cycle(sqlite_db, store, teacher):
    teacher.fail_next(1, status=401)
    ref = await put_spec(sqlite_db, store, toy_spec(teacher.url, synthesis={"examples": 1}))

    event = cycle(ref)

    assert await deliver(deps(sqlite_db, store), event) == "dead_lettered_permanent"

    [failed] = await staged(sqlite_db, CycleFailed)
    assert failed.stage == "synth"
    assert "answered HTTP 401" in failed.reason and "127.0.0.1" in failed.reason
    [letter] = await staged(sqlite_db, DeadLettered)
    assert letter.original_event_id == str(event.event_id)
    assert await staged(sqlite_db, SynthCompleted) == []
    run = await get_run(sqlite_db, str(event.cycle_id))
    assert run.status == "failed" and run.reason == failed.reason


async def test_a_teacher_down_on_the_last_delivery_ends_the_cycle(db, store, teacher):
    teacher.fail_next(1000, status=503)
    ref = await put_spec(db, store, toy_spec(teacher.url, synthesis={"examples": 2}))
    d = deps(db, store, max_attempts=2)
    event = cycle(ref)

    assert await deliver(d, event) == "retried"  # a teacher outage may pass
    assert await staged(db, CycleFailed) == []
    assert await deliver(d, event, number=POLICY.max_deliver) == "dead_lettered_exhausted"

    [failed] = await staged(db, CycleFailed)
    assert failed.stage == "synth" and failed.causation_id == event.event_id
    assert f"after {POLICY.max_deliver} deliveries" in failed.reason
    assert "still failing after 2 attempts" in failed.reason and "HTTP 503" in failed.reason
    [letter] = await staged(db, DeadLettered)
    assert letter.error_kind == "exhausted" and letter.reason == failed.reason
    assert await staged(db, SynthCompleted) == []
    run = await get_run(db, str(event.cycle_id))
    assert run.status == "failed" and run.reason == failed.reason


async def test_a_refused_request_rejects_only_its_example(sqlite_db, store, teacher):
    teacher.fail_next(1, status=400)
    ref = await put_spec(sqlite_db, store, toy_spec(teacher.url, synthesis={"examples": 3}))
    event = cycle(ref)

    assert await deliver(deps(sqlite_db, store), event) == "acked"

    [done] = await staged(sqlite_db, SynthCompleted)
    assert done.examples == 2
    run = await get_run(sqlite_db, str(event.cycle_id))
    assert json.loads(run.stats)["rejected_by_reason"] == {"teacher refused": 1}
    [rejected] = await jsonl(store, run.rejected_ref())
    # The refusal's own wording is shared.llm's; what matters here is which call and status.
    assert rejected["reason"].startswith("teacher refused: asked for an input, ")
    assert "HTTP 400" in rejected["reason"]


async def test_self_consistency_keeps_the_majority(sqlite_db, store, teacher):
    def one_dissents(_: str, right: str, n: int) -> str:
        value = json.loads(right)
        value["urgent"] = not value["urgent"]
        return json.dumps(value) if n == 1 else right

    teacher.answer = one_dissents
    data = toy_spec(teacher.url, synthesis={"self_consistency": 3, "examples": 6})
    ref = await put_spec(sqlite_db, store, data)

    assert await deliver(deps(sqlite_db, store), cycle(ref)) == "acked"

    [done] = await staged(sqlite_db, SynthCompleted)
    assert done.examples == 6
    truth = {r["input"]: r["output"] for r in teacher.pool}
    assert all(r["output"] == truth[r["input"]] for r in await jsonl(store, done.batch))
    assert teacher.counts() == {"input": 6, "answer": 18}
    samples = [s.body for s in teacher.requests if s.kind == "answer"]
    assert {s["temperature"] for s in samples} == {0.7}  # samples must be able to differ


async def test_self_consistency_without_majority_rejects(sqlite_db, store, teacher):
    answers = ['{"label": "billing", "urgent": true}', '{"label": "outage", "urgent": true}']

    def all_differ(_: str, right: str, n: int) -> str:
        return right if n == 0 else answers[n - 1]

    teacher.answer = all_differ
    data = toy_spec(
        teacher.url,
        synthesis={"self_consistency": 3, "examples": 3},
        negatives={"share": 0.0},
        use_cases=[{"name": "account", "weight": 1}],
    )
    event = cycle(await put_spec(sqlite_db, store, data))

    assert await deliver(deps(sqlite_db, store), event) == "acked"

    [failed] = await staged(sqlite_db, CycleFailed)
    assert "no agreement: 3" in failed.reason
    run = await get_run(sqlite_db, str(event.cycle_id))
    assert json.loads(run.stats)["rejected_by_reason"] == {"no agreement": 3}


async def test_iteration_regenerates_only_the_failing_slices(db, store, teacher):
    ref = await put_spec(db, store, toy_spec(teacher.url))
    cycle_id = uuid.uuid4()
    await completed_run(db, cycle_id, 1)
    event = CycleIterationRequested(
        cycle_id=cycle_id,
        task_name="toy-triage",
        task_version=1,
        task_spec=ref,
        iteration=2,
        failing_slices=["outage"],
        evaluation_report=ref,
        producer="evaluator",
    )

    assert await deliver(deps(db, store), event) == "acked"

    [done] = await staged(db, SynthCompleted)
    assert (done.iteration, done.examples_per_slice) == (2, {"outage": 10})
    rows = await jsonl(store, done.batch)
    assert {(r["use_case"], r["negative"], r["iteration"]) for r in rows} == {("outage", False, 2)}
    prompts = [s.body["messages"][1]["content"] for s in teacher.requests]
    assert all("Use case: outage" in p for p in prompts if p.startswith("The assistant works"))
    run = await get_run(db, str(event.cycle_id), iteration=2)
    assert json.loads(run.stats)["focus"] == {"use_cases": ["outage"], "negatives": False}


async def test_an_iteration_aims_at_error_patterns_and_no_golden_input_reaches_training(
    sqlite_db, store, teacher
):
    from curation.decontam import GoldenIndex
    from curation.domain import Options, Row, curate
    from curation.filters import QualityRules

    # The worst case: the golden set holds the very inputs a teacher hands out for the
    # confused label, and the evaluator's report (which synth-data must not read) quotes them.
    golden = [r for r in teacher.pool if r["use_case"] == "outage" and not r["negative"]][:4]
    report = json.dumps({"failures": [{"input": g["input"]} for g in golden]}).encode()
    data = toy_spec(teacher.url)
    ref = await put_spec(sqlite_db, store, data)
    cycle_id = uuid.uuid4()
    await completed_run(sqlite_db, cycle_id, 1)
    event = CycleIterationRequested(
        cycle_id=cycle_id,
        task_name="toy-triage",
        task_version=1,
        task_spec=ref,
        iteration=2,
        failing_slices=["outage", "billing"],
        evaluation_report=await store.put_bytes(report, media_type="application/json"),
        error_patterns=[
            Confusion(field="label", expected="outage", got="billing", count=3),
            Confusion(field="urgent", expected="true", got="false", count=2),
        ],
        producer="evaluator",
    )

    assert await deliver(deps(sqlite_db, store), event) == "acked"

    [done] = await staged(sqlite_db, SynthCompleted)
    rows = await jsonl(store, done.batch)
    aims = Counter(json.dumps(r["aim"], sort_keys=True) for r in rows if r["aim"])
    assert sum(aims.values()) == 5  # half of the 10, by count 3 : 2
    assert {r["use_case"] for r in rows if r["aim"] and r["aim"]["expected"] == "outage"} == {
        "outage"
    }
    written = [s.body["messages"][1]["content"] for s in teacher.requests if s.kind == "input"]
    aimed = [p for p in written if "\nAim: " in p]
    assert len(aimed) == 5
    assert any("distinguishes label: outage from label: billing" in p for p in aimed)
    # What synth-data composes for the teacher holds labels, never a golden input.
    index = GoldenIndex(((str(i), g["input"]) for i, g in enumerate(golden)), 8)
    assert not [p for p in written if index.match(p)]
    # The teacher echoed golden inputs into the batch; curation's decontamination keeps none.
    echoed = [r for r in rows if index.match(r["input"])]
    assert echoed, "the scripted teacher should have handed out golden inputs"
    batch = [Row(r["id"], r["use_case"], r["negative"], r["input"], r["output"]) for r in rows]
    options = Options(0.85, 1, 4000, 8, 0.1, 0.0)
    rules = QualityRules(1, 4000, data["output_schema"], data["negatives"]["expected"])
    draft = curate(batch, rules, index, options)
    assert not [r for r in draft.kept if index.match(r.input, r.output)]
    contaminated = {r.row_id for r in draft.rejected if r.reason == "contaminated"}
    assert {r["id"] for r in echoed} <= contaminated


async def test_a_cycle_without_spec_runs_the_registrys_latest_version(db, store, teacher):
    await put_spec(db, store, toy_spec(teacher.url, synthesis={"examples": 2}))
    ref = await put_spec(db, store, toy_spec(teacher.url, synthesis={"examples": 4}))
    d = deps(db, store)
    # A registration on the bus that the registry never made: refused, and never "latest".
    forged_ref = await store.put_bytes(b'{"name": "toy-triage"}', media_type="application/json")
    forged = TaskRegistered(
        cycle_id=None, producer="ops-cli", task_name="toy-triage", task_version=99, spec=forged_ref
    )
    assert await deliver(d, forged) == "dead_lettered_permanent"
    event = cycle(None)

    assert await deliver(d, event) == "acked"

    [done] = await staged(db, SynthCompleted)
    assert (done.task_version, done.task_spec, done.examples) == (2, ref, 4)
    [letter] = await staged(db, DeadLettered)
    assert "version 99" in letter.reason and "registry has no such version" in letter.reason


async def test_a_task_the_registry_lacks_ends_the_cycle_at_once(db, store, teacher):
    ref = await put_spec(db, store, toy_spec(teacher.url))
    d = deps(db, store)
    unknown = cycle(None, task_name="nobody-applied-me")
    wrong_version = cycle(ref, task_version=7)

    assert await deliver(d, unknown) == "dead_lettered_permanent"
    assert await deliver(d, wrong_version) == "dead_lettered_permanent"

    failed = {f.cycle_id: f.reason for f in await staged(db, CycleFailed)}
    assert (
        "'nobody-applied-me' (any version) is not in the task registry" in failed[unknown.cycle_id]
    )
    assert "(version 7, spec " in failed[wrong_version.cycle_id]
    assert teacher.requests == [] and await staged(db, SynthCompleted) == []


PACK = Path(__file__).resolve().parents[2] / "tasks" / "ticket-triage"


@pytest.mark.skipif(not (PACK / "generate.py").exists(), reason="the demo task pack is missing")
async def test_the_ticket_triage_pack_with_an_oracle_teacher(sqlite_db, store):
    loader = importlib.util.spec_from_file_location("ticket_triage_generate", PACK / "generate.py")
    generate = importlib.util.module_from_spec(loader)
    loader.loader.exec_module(generate)
    pool = generate.make_examples(300, 11)
    data = yaml.safe_load((PACK / "spec.yaml").read_text(encoding="utf-8"))
    data["output_schema"] = json.loads((PACK / "schema.json").read_text(encoding="utf-8"))
    with running(pool) as oracle:
        data["teacher"]["base_url"] = oracle.url
        data["synthesis"]["examples"] = 20
        event = cycle(await put_spec(sqlite_db, store, data), task_name=data["name"])

        assert await deliver(deps(sqlite_db, store), event) == "acked"

    [done] = await staged(sqlite_db, SynthCompleted)
    assert done.examples == 20 and sum(done.examples_per_slice.values()) == 20
    assert done.examples_per_slice["negative"] == 3  # negatives.share 0.15
    truth = {r["input"]: r["output"] for r in pool}
    rows = await jsonl(store, done.batch)
    assert all(r["output"] == truth[r["input"]] for r in rows)
    assert {r["style"] for r in rows} == set(data["synthesis"]["styles"])
    assert any(r["edge_case"] for r in rows)
