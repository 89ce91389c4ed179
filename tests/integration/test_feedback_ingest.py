"""feedback-collector on a real nats-server, SQLite and PostgreSQL: the service's own router
and batched consumers ingest what a gateway publishes; training data, stats and cycles follow."""

from __future__ import annotations

import asyncio
import time
import uuid
from contextlib import asynccontextmanager
from datetime import UTC, datetime, timedelta

from sqlalchemy import select

from feedback_collector import repository as repo
from feedback_collector.cycles import request_cycle
from feedback_collector.datasets import build_training_data
from feedback_collector.handlers import build_router
from feedback_collector.models import FeedbackRow, RejectionRow, RolloutRow, TraceRow
from feedback_collector.policy import Policy
from feedback_collector.rollouts import report_rollouts
from feedback_collector.service import (
    Deps,
    ingest_feedback,
    ingest_traces,
    stats,
    sweep,
    trace_row,
)
from feedback_collector.settings import NAME, FeedbackSettings
from shared.bus import JetStreamPublisher, make_broker
from shared.db import Database, OutboxRow
from shared.events import ConsumerPolicy, FeedbackRecorded, RolloutChanged, TrafficLogged
from shared.events.base import ArtifactRef
from shared.events.catalog import CycleRequested, DriftDetected
from shared.runtime.service import ServiceContext
from shared.settings import PlatformSettings

TASK = "support"
SETTINGS = FeedbackSettings(batch_size=64, poll_s=0.2, max_per_user=5, min_agreeing_users=2)


def traffic(rid: uuid.UUID, question: str, **kw) -> TrafficLogged:
    return TrafficLogged(
        producer="deployer",
        request_id=rid,
        task_name=TASK,
        arm=kw.pop("arm", "student"),
        messages=[{"role": "user", "content": question}],
        completion=kw.pop("completion", "It shipped."),
        latency_ms=kw.pop("latency_ms", 10.0),
        model_version=kw.pop("model_version", "v1"),
        **kw,
    )


def feedback(rid: uuid.UUID, user: str, correction: str | None, **kw) -> FeedbackRecorded:
    return FeedbackRecorded(
        producer="deployer",
        request_id=rid,
        task_name=TASK,
        correction=correction,
        user_id=user,
        key_id=kw.pop("key_id", f"key-{user}"),
        **kw,
    )


async def eventually(predicate, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if await predicate():
            return
        await asyncio.sleep(0.1)
    raise AssertionError("condition not met in time")


async def rows(db: Database, model) -> list:
    async with db.uow() as uow:
        found = list((await uow.session.scalars(select(model).order_by(model.id))).all())
        uow.session.expunge_all()  # plain values after the unit of work rolls back
        return found


async def publish(url: str, *events) -> None:
    async with make_broker(url, client_name="gateway") as broker:
        await broker.connect()
        for event in events:
            await JetStreamPublisher(broker).publish_event(event)


@asynccontextmanager
async def service(url: str, db: Database):
    """The service's router and runners, as create_service_app wires them, in this loop."""
    broker = make_broker(url, client_name=NAME)
    ctx = ServiceContext(
        name=NAME,
        settings=PlatformSettings(nats_url=url),
        db=db,
        broker=broker,
        policy=ConsumerPolicy(ack_wait_s=10),
        artifacts=None,  # type: ignore[arg-type]  (this service stores no artifacts)
    )
    broker.include_router(build_router(ctx, SETTINGS))
    await broker.start()
    tasks = [asyncio.create_task(r.run(broker, ctx.stop)) for r in ctx.batch_consumers]
    try:
        yield
    finally:
        ctx.stop.set()
        await asyncio.wait_for(asyncio.gather(*tasks), 15)
        await broker.stop()


async def test_ingest_keeps_early_feedback_and_makes_scrubbed_examples(private_nats, db: Database):
    deployment = uuid.uuid4()
    r1, r2, lonely = uuid.uuid4(), uuid.uuid4(), uuid.uuid4()
    flood_ids = [uuid.uuid4() for _ in range(12)]
    async with service(private_nats.url, db):
        # Feedback first: its trace is still in the gateway's buffer.
        await publish(
            private_nats.url,
            feedback(r1, "ann", "It ships on Monday, ask jane@example.com", rating=-1),
            feedback(r1, "bob", "it ships on monday,  ask jane@example.com"),
            feedback(lonely, "ann", "never traced"),
        )

        async def stored_unmatched():
            fb = await rows(db, FeedbackRow)
            return len(fb) == 3 and all(f.matched_at is None for f in fb)

        await eventually(stored_unmatched)
        await publish(
            private_nats.url,
            RolloutChanged(
                producer="deployer",
                cycle_id=None,
                deployment_id=deployment,
                task_name=TASK,
                model=ArtifactRef(uri="file:///m", sha256="a" * 64, size_bytes=1),
                stage="ab",
                traffic_share=0.5,
                reason="promoted",
            ),
        )
        await eventually(lambda: _has(db, RolloutRow, 1))
        await publish(
            private_nats.url,
            traffic(r1, "Where is order 7 for +44 20 7946 0958?", deployment_id=deployment),
            traffic(r2, "hello", stage="full", model_version="v0", error="upstream 504"),
            *(traffic(rid, f"question {i}") for i, rid in enumerate(flood_ids)),
            *(feedback(rid, "mallory", "BUY NOW at evil.example") for rid in flood_ids),
        )

        async def matched():
            fb = await rows(db, FeedbackRow)
            return len(fb) == 15 and sum(f.matched_at is not None for f in fb) == 14

        await eventually(matched)

    traces = {t.request_id: t for t in await rows(db, TraceRow)}
    assert len(traces) == 14
    assert (traces[str(r1)].model_version, traces[str(r1)].stage) == ("v1", "ab")
    assert traces[str(r2)].stage == "full"

    deps = Deps(db=db, settings=SETTINGS)
    built = await build_training_data(deps, TASK)
    sft = [e for e in built.examples if e.kind == "sft"]
    assert len(sft) == 1 and sft[0].trust == "users"
    assert sft[0].chosen == "It ships on Monday, ask <EMAIL>"
    assert sft[0].messages == (("user", "Where is order 7 for <PHONE>?"),)
    assert "evil.example" not in repr(built.examples)
    assert sorted(f.event_id for f in built.waiting) == sorted(
        f.event_id for f in await rows(db, FeedbackRow) if f.used_at is None
    )
    rejected = await rows(db, RejectionRow)
    assert [r.reason for r in rejected] == ["user_cap"] * 7
    assert {r.user_id for r in rejected} == {"mallory"}

    # The feedback nobody traced waits until the pending period is over, then is rejected.
    await sweep(deps, now=datetime.now(UTC) + timedelta(days=SETTINGS.pending_feedback_days + 1))
    rejected = await rows(db, RejectionRow)
    assert [(r.request_id, r.reason) for r in rejected if r.reason == "trace_missing"] == [
        (str(lonely), "trace_missing")
    ]

    figures = {(f.model_version, f.stage): f for f in await stats(db, TASK, since=_long_ago())}
    assert figures[("v1", "ab")].requests == 1 and figures[("v1", "ab")].negative_rate == 1.0
    assert figures[("v0", "full")].error_rate == 1.0
    assert figures[("v1", "none")].requests == 12


async def test_a_redelivered_drift_alarm_starts_exactly_one_cycle(db: Database):
    policy = Policy(cooldown=timedelta(hours=1))
    alarm = DriftDetected(
        producer=NAME,
        task_name=TASK,
        kind="input",
        score=0.3,
        threshold=0.1,
        window_start="2026-12-01T00:00:00Z",
        window_end="2026-12-01T01:00:00Z",
    )
    trigger = f"drift:{TASK}:input:{alarm.window_end}"
    for _ in range(3):  # the same alarm, seen again after a redelivery or a restart
        async with db.uow() as uow:
            events = await request_cycle(uow, TASK, policy, trigger=trigger, drift=alarm)
            await uow.publish(*events)
            await uow.commit()
    async with db.uow() as uow:  # another alarm while that cycle is in flight
        assert await request_cycle(uow, TASK, policy, trigger="drift:other", drift=alarm) == []
    async with db.uow() as uow:
        subjects = (await uow.session.scalars(select(OutboxRow.subject))).all()
    assert sorted(subjects) == sorted([CycleRequested.subject, DriftDetected.subject])


async def _has(db: Database, model, n: int) -> bool:
    return len(await rows(db, model)) == n


def _long_ago() -> datetime:
    return datetime.now(UTC) - timedelta(days=1)


async def test_a_trace_and_its_feedback_committed_at_once_are_matched(db: Database):
    """The two ingest consumers run side by side: under read committed each used to miss the
    other's uncommitted rows, and the feedback waited until expiry. Held open on purpose here."""
    rids = [uuid.uuid4() for _ in range(8)]

    async def one(handler, event):
        async with db.uow() as uow:
            await handler(uow, [event])
            # Still open while the other consumer's transaction runs: the interleaving that
            # lost matches on PostgreSQL. (SQLite's BEGIN IMMEDIATE queues the second one.)
            await asyncio.sleep(0.05)
            await uow.commit()

    for rid in rids:
        pair = [
            one(ingest_feedback, feedback(rid, "ann", "fixed")),
            one(ingest_traces, traffic(rid, "q")),
        ]
        if rid.int % 2:
            pair.reverse()
        await asyncio.gather(*pair)
    fb = await rows(db, FeedbackRow)
    assert len(fb) == len(rids) and all(f.matched_at is not None for f in fb)


async def test_the_sweep_matches_waiting_feedback_before_giving_up_on_it(db: Database):
    rid = uuid.uuid4()
    async with db.uow() as uow:
        await ingest_feedback(uow, [feedback(rid, "ann", "fixed")])
        await uow.commit()
    async with db.uow() as uow:  # the trace lands without the matching step (an old release)
        await repo.add_traces(uow.session, [trace_row(traffic(rid, "q"))])
        await uow.commit()
    deps = Deps(db=db, settings=SETTINGS)
    await sweep(deps, now=datetime.now(UTC) + timedelta(days=SETTINGS.pending_feedback_days + 1))
    assert await rows(db, RejectionRow) == []
    assert all(f.matched_at is not None for f in await rows(db, FeedbackRow))


async def test_unfinished_rollouts_get_their_figures_once_per_change(db: Database):
    from shared.events.production import RolloutMeasured

    deployment = uuid.uuid4()
    deps = Deps(db=db, settings=SETTINGS)
    async with db.uow() as uow:
        await repo.upsert_rollout(
            uow.session,
            {
                "deployment_id": str(deployment),
                "task_name": TASK,
                "stage": "shadow",
                "model_sha256": "a" * 64,
                "traffic_share": 0.0,
                "updated_at": datetime.now(UTC) - timedelta(minutes=1),
            },
        )
        await uow.commit()
    assert await report_rollouts(deps) == 0  # nothing served by the candidate yet

    rid = uuid.uuid4()
    async with db.uow() as uow:
        await ingest_traces(
            uow,
            [
                traffic(rid, "q", arm="teacher", completion='{"a": 1}', stage="shadow"),
                traffic(
                    rid,
                    "q",
                    arm="shadow",
                    completion='{"a": 1}',
                    deployment_id=deployment,
                    stage="shadow",
                ),
                # Served at another step (a late copy, or before the rollout): not counted.
                traffic(uuid.uuid4(), "q", arm="teacher", stage="ab"),
            ],
        )
        await ingest_feedback(uow, [feedback(rid, "ann", None, rating=-1)])
        await uow.commit()
    assert await report_rollouts(deps) == 1
    assert await report_rollouts(deps) == 0  # unchanged: not sent again

    async with db.uow() as uow:
        payloads = (
            await uow.session.scalars(
                select(OutboxRow.payload).where(OutboxRow.subject == RolloutMeasured.subject)
            )
        ).all()
    (sent,) = [RolloutMeasured.model_validate_json(p) for p in payloads]
    assert (sent.deployment_id, sent.stage, sent.traffic_share) == (deployment, "shadow", 0.0)
    assert (sent.candidate.requests, sent.candidate.compared, sent.candidate.agreed) == (1, 1, 1)
    assert (sent.live.requests, sent.live.rated, sent.live.negative) == (1, 1, 1)
    assert sent.candidate.rated == 0


async def test_a_trace_delivered_again_is_stored_once(db: Database):
    # The trace consumer keeps no inbox rows (claim=False): the event id on the trace row is
    # what makes a redelivery a no-op.
    again = traffic(uuid.uuid4(), "where is my parcel?")
    for _ in range(2):
        async with db.uow() as uow:
            await ingest_traces(uow, [again])
            await uow.commit()
    assert [t.event_id for t in await rows(db, TraceRow)] == [str(again.event_id)]
