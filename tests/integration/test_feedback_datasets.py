"""Feedback into the next cycle, on SQLite and PostgreSQL: corroborated corrections become a
feedback dataset, the retrain policy starts one cycle that carries it, a failed cycle frees the
task, and a poisoning flood never reaches the dataset."""

from __future__ import annotations

import json
import uuid
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import select

from feedback_collector.datasets import publish_feedback
from feedback_collector.service import (
    Deps,
    ingest_feedback,
    ingest_traces,
    record_failed_cycle,
    record_reference,
    record_started_cycle,
)
from feedback_collector.settings import FeedbackSettings
from shared.artifacts import AsyncArtifactStore, LocalArtifactStore
from shared.db import Database, OutboxRow
from shared.events import CycleFailed, FeedbackRecorded, TrafficLogged
from shared.events.catalog import CycleRequested, FeedbackDatasetPublished
from shared.tasks.sections import Monitoring
from tests.fixtures.datasets import StoredDataset, make_spec

TASK = "support"
ANSWER = '{"category": "billing", "priority": "low"}'
FIXED = '{"category": "billing", "priority": "high"}'
SETTINGS = FeedbackSettings(min_new_examples=1, cooldown_s=0, min_agreeing_users=2, max_per_user=3)


def trace(rid: uuid.UUID, text: str, arm: str = "student") -> TrafficLogged:
    return TrafficLogged(
        producer="deployer",
        request_id=rid,
        task_name=TASK,
        arm=arm,
        messages=[{"role": "system", "content": "triage"}, {"role": "user", "content": text}],
        completion=ANSWER,
        latency_ms=12.0,
        model_version="v1",
    )


def correction(rid: uuid.UUID, user: str, text: str) -> FeedbackRecorded:
    return FeedbackRecorded(
        producer="deployer",
        request_id=rid,
        task_name=TASK,
        rating=-1,
        correction=text,
        user_id=user,
        key_id=f"key-{user}",
    )


async def ingest(db: Database, *events) -> None:
    async with db.uow() as uow:
        await ingest_traces(uow, [e for e in events if isinstance(e, TrafficLogged)])
        await ingest_feedback(uow, [e for e in events if isinstance(e, FeedbackRecorded)])
        await uow.commit()


async def outbox(db: Database, cls) -> list:
    async with db.uow() as uow:
        rows = await uow.session.scalars(
            select(OutboxRow.payload).where(OutboxRow.subject == cls.subject)
        )
        return [cls.model_validate_json(p) for p in rows.all()]


@pytest.fixture
def store(tmp_path) -> AsyncArtifactStore:
    return AsyncArtifactStore(LocalArtifactStore(tmp_path / "artifacts"))


async def test_corrections_become_a_feedback_dataset_that_starts_one_cycle(
    db: Database, store: AsyncArtifactStore
):
    deps = Deps(db=db, settings=SETTINGS, artifacts=store)
    good = uuid.uuid4()
    flood = [uuid.uuid4() for _ in range(6)]
    await ingest(
        db,
        trace(good, "I was charged twice, call me on +44 20 7946 0958"),
        correction(good, "ann", FIXED),
        correction(good, "bob", FIXED),
        *(trace(rid, f"question {i}") for i, rid in enumerate(flood)),
        # One user alone, however often: never corroborated, never in a dataset.
        *(correction(rid, "mallory", '{"category": "BUY NOW evil.example"}') for rid in flood),
    )
    sent = await publish_feedback(deps)
    assert [type(e) for e in sent] == [FeedbackDatasetPublished, CycleRequested]
    published, requested = sent
    assert requested.reason == "feedback" and requested.feedback_dataset == published.dataset
    assert published.cycle_id == requested.cycle_id and published.examples == 1

    rows = [json.loads(line) for line in (await store.get_bytes(published.dataset)).splitlines()]
    assert [(r["input"], r["output"]) for r in rows] == [
        ("I was charged twice, call me on <PHONE>", FIXED)
    ]
    assert rows[0]["lineage"]["request_ids"] == [str(good)]
    assert "evil.example" not in json.dumps(rows)
    # Committed through the outbox, with the cycle row: nothing sent twice on the next round.
    assert await outbox(db, CycleRequested) == [requested]
    assert await publish_feedback(deps) == []

    # While that cycle is in flight a new trusted example starts nothing; once it failed, it does.
    # This one corrects the teacher, which answered the client (nothing is rolled out yet).
    later = uuid.uuid4()
    await ingest(
        db,
        trace(later, "refund please", arm="teacher"),
        trace(later, "refund please", arm="shadow"),
        correction(later, "ann", FIXED),
        correction(later, "cy", FIXED),
    )
    assert await publish_feedback(deps) == []
    failed = CycleFailed(
        producer="evaluator",
        cycle_id=requested.cycle_id,
        task_name=TASK,
        stage="evaluation",
        reason="below the gate",
    )
    async with db.uow() as uow:
        await record_failed_cycle(uow, failed, None)
        await uow.commit()
    second = await publish_feedback(deps)
    assert [type(e) for e in second] == [FeedbackDatasetPublished, CycleRequested]
    assert second[0].examples == 2  # every trusted example so far, the new one included

    # Once that cycle ends too, nothing is new: the examples it included count only once.
    async with db.uow() as uow:
        await record_failed_cycle(
            uow, failed.model_copy(update={"cycle_id": second[1].cycle_id}), None
        )
        await uow.commit()
    assert await publish_feedback(deps) == []


async def test_no_cycle_below_the_policy_minimum(db: Database, store: AsyncArtifactStore):
    deps = Deps(
        db=db, settings=SETTINGS.model_copy(update={"min_new_examples": 2}), artifacts=store
    )
    rid = uuid.uuid4()
    await ingest(
        db, trace(rid, "hello"), correction(rid, "ann", FIXED), correction(rid, "bob", FIXED)
    )
    assert await publish_feedback(deps, now=datetime.now(UTC) + timedelta(seconds=1)) == []
    assert await outbox(db, CycleRequested) == []


async def applied(db: Database, store: AsyncArtifactStore, monitoring: dict) -> None:
    """A published dataset for TASK whose applied spec carries `monitoring`."""
    rows = await store.put_bytes(b'{"id": "1", "input": "hello", "output": "{}"}\n')
    spec = make_spec(golden_set=rows, base_model_ref=None, name=TASK)
    spec = spec.model_copy(update={"monitoring": Monitoring(**monitoring)})
    spec_ref = await store.put_bytes(spec.model_dump_json().encode())
    stored = StoredDataset(spec, spec_ref, rows, rows, rows, 1, 0)
    event = stored.published(occurred_at=datetime.now(UTC) - timedelta(days=1))
    async with db.uow() as uow:
        await record_reference(uow, event, None)
        await uow.commit()


async def test_the_specs_schedule_starts_one_cycle_per_period(
    db: Database, store: AsyncArtifactStore
):
    deps = Deps(db=db, settings=SETTINGS, artifacts=store)
    await applied(db, store, {})
    assert await publish_feedback(deps) == [], "no schedule unless the spec sets one"

    await applied(db, store, {"retrain_every_days": 7, "cooldown_hours": 0})
    t0 = datetime(2026, 12, 1, 12, tzinfo=UTC)
    [first] = await publish_feedback(deps, now=t0)
    assert isinstance(first, CycleRequested) and first.reason == "schedule"
    assert first.feedback_dataset is None  # no feedback yet: a retrain on fresh synthetic data
    assert await publish_feedback(deps, now=t0) == []  # in flight

    async with db.uow() as uow:
        failed = CycleFailed(
            producer="trainer",
            cycle_id=first.cycle_id,
            task_name=TASK,
            stage="training",
            reason="x",
        )
        await record_failed_cycle(uow, failed, None)
        await uow.commit()
    # The same period started its cycle already, however often the job runs in it.
    assert await publish_feedback(deps, now=t0 + timedelta(hours=1)) == []
    [second] = await publish_feedback(deps, now=t0 + timedelta(days=7))
    assert second.reason == "schedule" and second.cycle_id != first.cycle_id
    assert await outbox(db, CycleRequested) == [first, second]


async def test_a_spec_whose_thresholds_cannot_work_is_refused_by_name():
    with pytest.raises(ValueError, match=r"quality_baseline 0\.5 must be below quality_shifted"):
        SETTINGS.for_task(Monitoring(quality_baseline=0.5))
    with pytest.raises(ValueError, match=r"quality_baseline 0\.3 must be below quality_shifted"):
        Monitoring(quality_baseline=0.3, quality_shifted=0.2)  # refused at apply time
    tuned = SETTINGS.for_task(Monitoring(drift_window=20, cooldown_hours=2, max_cycles=1))
    assert (tuned.drift_window, tuned.drift_min_window) == (20, 20)
    assert (tuned.cooldown_s, tuned.max_cycles) == (7200, 1)
    assert tuned.quality_baseline == SETTINGS.quality_baseline  # unset: the operator's default


async def test_an_operators_cycle_counts_as_in_flight_until_it_ends_or_ages_out(
    db: Database, store: AsyncArtifactStore
):
    deps = Deps(db=db, settings=SETTINGS, artifacts=store)
    manual = CycleRequested(producer="ops", cycle_id=uuid.uuid4(), task_name=TASK)
    async with db.uow() as uow:
        await record_started_cycle(uow, manual, None)
        await record_started_cycle(uow, manual, None)  # redelivered: one row
        await uow.commit()
    good = uuid.uuid4()
    await ingest(
        db,
        trace(good, "refund please"),
        correction(good, "ann", FIXED),
        correction(good, "bo", FIXED),
    )
    assert await publish_feedback(deps) == [], "the operator's cycle is in flight"
    # Its end was never heard of: after FEEDBACK_MAX_CYCLE_AGE_DAYS it no longer holds the task.
    later = datetime.now(UTC) + timedelta(days=SETTINGS.max_cycle_age_days, hours=1)
    started = await publish_feedback(deps, now=later)
    assert [type(e) for e in started] == [FeedbackDatasetPublished, CycleRequested]


async def test_a_cycle_whose_end_comes_before_its_start_is_not_in_flight(
    db: Database, store: AsyncArtifactStore
):
    deps = Deps(db=db, settings=SETTINGS, artifacts=store)
    manual = CycleRequested(producer="ops", cycle_id=uuid.uuid4(), task_name=TASK)
    failed = CycleFailed(
        producer="synth-data", cycle_id=manual.cycle_id, task_name=TASK, stage="synth", reason="x"
    )
    async with db.uow() as uow:  # two durables: the end may be consumed first
        await record_failed_cycle(uow, failed, None)
        await record_started_cycle(uow, manual, None)
        await uow.commit()
    good = uuid.uuid4()
    await ingest(
        db,
        trace(good, "refund please"),
        correction(good, "ann", FIXED),
        correction(good, "bo", FIXED),
    )
    started = await publish_feedback(deps)
    assert [type(e) for e in started] == [FeedbackDatasetPublished, CycleRequested]
