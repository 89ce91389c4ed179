"""A negative rating with no correction, relabelled by the teacher through synth-data: the
feedback collector asks by event, synth-data answers with the real teacher client (the scripted
teacher on loopback), and the answer becomes a trusted example. Both services' stages run as
they are subscribed (the stage template, the per-message policy), on SQLite and PostgreSQL."""

from __future__ import annotations

import json
import uuid
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import select

from feedback_collector import relabels
from feedback_collector.datasets import publish_feedback
from feedback_collector.models import ExampleRow, FeedbackRow, RejectionRow, RelabelRow
from feedback_collector.service import Deps, ingest_feedback, ingest_traces, record_reference
from feedback_collector.settings import NAME as COLLECTOR
from feedback_collector.settings import FeedbackSettings
from shared.artifacts import AsyncArtifactStore, LocalArtifactStore
from shared.bus import durable_name, process
from shared.db import Database, OutboxRow
from shared.events import ConsumerPolicy, DatasetPublished, Event, FeedbackRecorded, TrafficLogged
from shared.events.catalog import RelabelCompleted, RelabelRequested
from shared.runtime.stage import handler_for
from shared.tasks import parse_spec
from synth_data import service as synth
from synth_data.settings import NAME as SYNTH
from synth_data.settings import SynthDataSettings
from tests.fixtures.datasets import StoredDataset
from tests.fixtures.teacher_server import running, toy_pool, toy_spec
from tests.integration.test_synth_service import FakeMessage

TASK = "toy-triage"
KNOWN = toy_pool()[0]  # the scripted teacher answers this input with its pool output
POLICY = ConsumerPolicy(max_deliver=3, ack_wait_s=30, backoff_base_s=0.1)


@pytest.fixture
def store(tmp_path) -> AsyncArtifactStore:
    return AsyncArtifactStore(LocalArtifactStore(tmp_path / "artifacts"))


def trace(text: str) -> TrafficLogged:
    return TrafficLogged(
        producer="deployer",
        request_id=uuid.uuid4(),
        task_name=TASK,
        arm="student",
        messages=[{"role": "system", "content": "triage"}, {"role": "user", "content": text}],
        completion='{"label": "outage", "urgent": true}',
        latency_ms=20.0,
        model_version="v1",
    )


def thumbs_down(t: TrafficLogged, correction: str | None = None, user: str = "ann"):
    return FeedbackRecorded(
        producer="deployer",
        request_id=t.request_id,
        task_name=TASK,
        rating=-1,
        correction=correction,
        user_id=user,
    )


async def deliver(db: Database, stage, event: Event, service: str) -> str:
    message = FakeMessage(event.model_dump_json().encode(), event.subject, 1, event.event_id.int)
    return await process(
        message,
        type(event),
        handler_for(stage, service=service, db=db),
        service=service,
        consumer=durable_name(service, type(event)),
        db=db,
        policy=POLICY,
    )


async def staged(db: Database, cls):
    async with db.uow() as uow:
        rows = await uow.session.scalars(
            select(OutboxRow.payload).where(OutboxRow.subject == cls.subject).order_by(OutboxRow.id)
        )
        return [cls.model_validate_json(r) for r in rows]


def _published(spec, spec_ref, rows) -> DatasetPublished:
    stored = StoredDataset(spec, spec_ref, rows, rows, rows, 1, 0)
    return stored.published(occurred_at=datetime.now(UTC) - timedelta(hours=1))


async def examples(db: Database) -> list[tuple]:
    async with db.uow() as uow:
        rows = (await uow.session.scalars(select(ExampleRow).order_by(ExampleRow.id))).all()
        return [(r.kind, r.trust, r.chosen, r.rejected, r.request_ids) for r in rows]


async def test_a_thumbs_down_is_relabelled_by_the_teacher_through_synth_data(
    db: Database, store: AsyncArtifactStore
):
    with running() as teacher:
        spec = parse_spec(toy_spec(teacher.url))
        spec_ref = await store.put_bytes(spec.model_dump_json().encode())
        rows = await store.put_bytes(b'{"id": "1", "input": "x", "output": "{}"}\n')
        known, private = trace(KNOWN["input"]), trace("My card 4111 1111 1111 1111 was charged")
        async with db.uow() as uow:
            await ingest_traces(uow, [known, private])
            await ingest_feedback(uow, [thumbs_down(known), thumbs_down(private)])
            await record_reference(uow, _published(spec, spec_ref, rows), None)
            await uow.commit()

        collector = Deps(db=db, settings=FeedbackSettings(min_new_examples=50), artifacts=store)
        [asked] = await publish_feedback(collector)
        assert isinstance(asked, RelabelRequested) and asked.count == 2
        assert asked.task_spec == spec_ref
        sent = [json.loads(line) for line in (await store.get_bytes(asked.inputs)).splitlines()]
        assert {r["id"] for r in sent} == {str(known.request_id), str(private.request_id)}
        assert "4111" not in json.dumps(sent), "scrubbed before it leaves for the teacher"
        assert await publish_feedback(collector) == [], "each input is asked once"

        # synth-data answers with its real teacher client.
        synth_deps = synth.Deps(db, store, SynthDataSettings(backoff_base_s=0.01, max_attempts=2))
        [stage] = [s for s in synth.stages(synth_deps) if s.consumes is RelabelRequested]
        assert await deliver(db, stage, asked, SYNTH) == "acked"
        [done] = await staged(db, RelabelCompleted)
        assert done.causation_id == asked.event_id and done.labeled == 1
        assert sum(done.failed.values()) == 1  # the scrubbed card message is unknown to it
        assert all("4111" not in json.dumps(r.body) for r in teacher.requests)

    # The collector turns the teacher's answer into trusted examples, once.
    collector_stage = relabels.stage(collector)
    assert await deliver(db, collector_stage, done, COLLECTOR) == "acked"
    assert await examples(db) == [
        ("sft", "teacher", KNOWN["output"], None, [str(known.request_id)]),
        (
            "preference",
            "teacher",
            KNOWN["output"],
            '{"label": "outage", "urgent": true}',
            [str(known.request_id)],
        ),
    ]
    assert await deliver(db, collector_stage, done, COLLECTOR) == "acked"  # redelivered
    # A relabel.completed this service never asked for changes nothing.
    forged = done.model_copy(update={"event_id": uuid.uuid4(), "causation_id": uuid.uuid4()})
    assert await deliver(db, collector_stage, forged, COLLECTOR) == "acked"
    assert len(await examples(db)) == 2

    # One user's correction that the teacher's relabel agrees with is trusted at once (it
    # would wait for a second user otherwise): the same example, not a second copy.
    agreeing = thumbs_down(known, correction=KNOWN["output"], user="bo")
    async with db.uow() as uow:
        await ingest_feedback(uow, [agreeing])
        await uow.commit()
    # Below min_new_examples: no cycle. The input the teacher could not answer is asked again.
    [again] = await publish_feedback(collector)
    assert isinstance(again, RelabelRequested) and again.count == 1
    async with db.uow() as uow:
        row = await uow.session.scalar(
            select(FeedbackRow).where(FeedbackRow.event_id == str(agreeing.event_id))
        )
        assert row.used_at is not None, "not left waiting for corroboration"
    kinds = [(kind, trust) for kind, trust, *_ in await examples(db)]
    assert kinds == [("sft", "teacher"), ("preference", "teacher")]


async def test_relabels_spend_the_caps_and_a_daily_budget_and_unanswered_ones_are_asked_again(
    db: Database, store: AsyncArtifactStore
):
    spec = parse_spec(toy_spec("http://127.0.0.1:9/v1"))
    spec_ref = await store.put_bytes(spec.model_dump_json().encode())
    rows = await store.put_bytes(b'{"id": "1", "input": "x", "output": "{}"}\n')
    flood = [trace(f"question {i}") for i in range(6)]
    async with db.uow() as uow:
        await ingest_traces(uow, flood)
        # One account rating everything down: only its cap's worth becomes teacher calls.
        await ingest_feedback(uow, [thumbs_down(t, user="mallory") for t in flood])
        await record_reference(uow, _published(spec, spec_ref, rows), None)
        await uow.commit()
    settings = FeedbackSettings(
        min_new_examples=50, max_per_user=4, relabel_per_day=3, relabel_attempts=2
    )
    collector = Deps(db=db, settings=settings, artifacts=store)
    [asked] = await publish_feedback(collector)
    assert asked.count == 3, "the daily budget"
    async with db.uow() as uow:
        queued = (await uow.session.scalars(select(RelabelRow.request_id))).all()
        caps = (await uow.session.scalars(select(RejectionRow.reason))).all()
    assert len(queued) == 4 and caps == ["user_cap", "user_cap"]
    assert await publish_feedback(collector) == [], "budget spent for today"

    # The teacher answered none: released, and asked again the next day (attempt 2 of 2).
    nothing = await store.put_bytes(b"")
    unanswered = RelabelCompleted(
        producer="synth-data",
        causation_id=asked.event_id,
        task_name=TASK,
        labels=nothing,
        labeled=0,
        failed={"teacher refused": 3},
    )
    assert await deliver(db, relabels.stage(collector), unanswered, COLLECTOR) == "acked"
    tomorrow = datetime.now(UTC) + timedelta(days=1, minutes=1)
    [again] = await publish_feedback(collector, now=tomorrow)
    assert again.count == 3
    later = tomorrow + timedelta(days=1, minutes=1)
    [last] = await publish_feedback(collector, now=later)
    assert last.count == 1, "only the fourth, never asked before; the others spent 2 attempts"
    # A request that came to nothing (dead-lettered): asked again after the retry period,
    # within the attempts left.
    much_later = later + timedelta(days=1, hours=settings.relabel_retry_hours)
    [retried] = await publish_feedback(collector, now=much_later)
    assert retried.count == 1
    assert await publish_feedback(collector, now=much_later + timedelta(days=2)) == []
