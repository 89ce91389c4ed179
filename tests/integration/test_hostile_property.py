"""Hostile events, property-based (issue 10): Hypothesis generates batches of messages for every
consumed subject of the catalog, valid and hostile mixed, and sends them to a running platform,
every consuming service and the stray auditor as real processes under their own identities on
a nats-server with authorization on (tests/fixtures/hostile_platform.py), SQLite and
PostgreSQL. After each batch:

- every message reached every consumer of its subject and was processed there (its inbox row)
  or dead-lettered with a reason; a stray was dead-lettered by the auditor; a message from an
  identity that may not publish the subject was refused by the server and reached nobody;
- no file appeared outside the artifact store and the services' own folders, and the bait
  folder that hostile references point at is still empty;
- no cycle that only hostile events named went any further: the platform committed nothing for
  it but dead letters and `cycle.failed` (it ended, or was refused as unknown);

and a valid cycle, requested before the first batch, still completes its first stages
(synth-data and curation) while the batches flow.

Processes rather than in-process consumers: the property is about the platform as deployed
(each service's own identity, settings and error policy), and one platform per database kind
serves every example. Cost on two cores: ~25 s to start, a sweep batch of every consumed subject
x every kind (96 messages), then random batches of 1-8. HYPOTHESIS_PROFILE=ci (the default): 5
random batches per database kind, ~75 s each; HYPOTHESIS_PROFILE=full: 100.
"""

from __future__ import annotations

import asyncio
import os
import time
import uuid
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import select

from feedback_collector.models import TraceRow
from shared.artifacts import AsyncArtifactStore, LocalArtifactStore
from shared.bus import durable_name
from shared.db import Database, InboxRow, OutboxRow
from shared.events.catalog import CycleFailed, CycleRequested, DeadLettered, TrafficLogged
from shared.tasks import parse_spec
from shared.tasks.registry import register
from tests.fixtures import hostile_events as h
from tests.fixtures.datasets import jsonl
from tests.fixtures.hostile_platform import Platform, start_platform
from tests.fixtures.infra import create_pg_database, drop_pg_database, pg_url
from tests.fixtures.teacher_server import running, toy_spec

settings.register_profile(
    "ci",
    max_examples=5,
    deadline=None,
    database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
settings.register_profile("full", settings.get_profile("ci"), max_examples=100)
PROFILE = os.environ.get("HYPOTHESIS_PROFILE", "ci")
SETTLE_S = 120.0
ENDED = {DeadLettered.subject, CycleFailed.subject}
SEEN: Counter[tuple[str, str]] = Counter()  # (kind, outcome), printed at the end


@dataclass(frozen=True)
class Row:
    subject: str
    cycle_id: str | None
    payload: str


# The trace consumer keeps no inbox rows (claim=False): a trace row, keyed by its event id, is.
TRACES = durable_name("feedback-collector", TrafficLogged)


async def outcomes(db: Database) -> tuple[set[tuple[str, str]], list[DeadLettered], list[Row]]:
    async with db.uow() as uow:
        inbox = {(r.consumer, r.event_id) for r in await uow.session.scalars(select(InboxRow))}
        inbox |= {(TRACES, e) for e in await uow.session.scalars(select(TraceRow.event_id))}
        stmt = select(OutboxRow.subject, OutboxRow.cycle_id, OutboxRow.payload)
        rows = [Row(*r) for r in await uow.session.execute(stmt)]
    letters = [
        DeadLettered.model_validate_json(r.payload)
        for r in rows
        if r.subject == DeadLettered.subject
    ]
    return inbox, letters, rows


def accounted(sent: h.Sent, durable: str, inbox, letters) -> DeadLettered | bool:
    for letter in letters:
        if letter.consumer == durable and (
            letter.original_event_id == sent.nonce or sent.nonce in letter.payload_excerpt
        ):
            return letter
    return not sent.validation and sent.kind != h.STRAY and (durable, sent.nonce) in inbox


async def send_and_settle(platform: Platform, batch: list[h.Sent]) -> None:
    refused = []
    for sent in batch:
        try:
            await platform.publish(sent.identity, sent.subject, sent.body, sent.nonce)
        except Exception as exc:  # a permissions violation shows as a timeout or an error
            refused.append((sent, exc))
    assert {id(s) for s, _ in refused} == {id(s) for s in batch if s.kind == h.WRONG_IDENTITY}, [
        (s.kind, s.subject, repr(e)) for s, e in refused
    ]
    delivered = [s for s in batch if s.kind != h.WRONG_IDENTITY]
    db = Database(platform.db_url)
    try:
        deadline = time.monotonic() + SETTLE_S
        while True:
            inbox, letters, rows = await outcomes(db)
            missing = [
                (s.kind, s.subject, d)
                for s in delivered
                for d in s.durables
                if not accounted(s, d, inbox, letters)
            ]
            if not missing:
                break
            platform.check_alive()
            assert time.monotonic() < deadline, f"not accounted for: {missing}\n{platform.logs()}"
            await asyncio.sleep(0.5)
    finally:
        await db.dispose()

    for sent in delivered:
        for durable in sent.durables:
            found = accounted(sent, durable, inbox, letters)
            done = f"processed by {durable.split('--')[0]}"
            outcome = f"dead-lettered ({found.error_kind})" if found is not True else done
            SEEN[sent.kind, outcome] += 1
            if isinstance(found, DeadLettered):
                assert found.reason.strip(), sent
                if sent.validation:
                    assert found.error_kind == "validation", (sent.kind, found.reason)
    for sent, _ in refused:  # refused by the server: no consumer ever saw it
        SEEN[sent.kind, "refused by the server"] += 1
        assert not any(
            sent.nonce in (x.payload_excerpt + str(x.original_event_id)) for x in letters
        )
        assert not any(event_id == sent.nonce for _, event_id in inbox)
    hostile_cycles = {s.cycle_id for s in delivered if s.cycle_id}
    advanced = [
        (r.subject, r.cycle_id)
        for r in rows
        if r.cycle_id in hostile_cycles and r.subject not in ENDED
    ]
    assert not advanced, f"hostile events advanced cycles: {advanced}"
    assert list(platform.bait.rglob("*")) == [], "a file was written outside the store"
    strays = [
        p.relative_to(platform.tree)
        for p in platform.tree.rglob("*")
        if p.is_file()
        and p.parts[len(platform.tree.parts)] not in {"artifacts", "home"}
        and p.suffix != ".log"
    ]
    assert strays == [], "files outside the store and the services' folders"


# ---------------------------------------------------------------- the platform and the test


@pytest.fixture(scope="module", params=["sqlite", "postgresql"])
def platform(request: pytest.FixtureRequest, tmp_path_factory) -> Iterator[Platform]:
    tmp: Path = tmp_path_factory.mktemp(f"hostile-{request.param}")
    if request.param == "sqlite":
        url = f"sqlite+aiosqlite:///{tmp / 'platform.db'}"
    else:
        name = asyncio.run(create_pg_database())
        url = pg_url(name)
    from shared.db.migrate import upgrade

    upgrade(url)
    try:
        with running() as teacher:
            started = asyncio.run(request_valid_cycle(tmp, url, teacher.url))
            for platform in start_platform(tmp, url):
                platform.valid_cycle = started
                yield platform
    finally:
        if request.param == "postgresql":
            asyncio.run(drop_pg_database(name))


async def request_valid_cycle(tmp: Path, url: str, teacher_url: str) -> CycleRequested:
    """Register the toy task (applied: its golden set in the store) as `task apply` does, and
    make the valid cycle.requested the test sends as "ops" once the platform runs."""
    db = Database(url)
    store = AsyncArtifactStore(LocalArtifactStore(tmp / "tree" / "artifacts"))
    try:
        rows = [
            {"id": f"g{i}", "input": f"golden input number {i} about a refund"} for i in range(3)
        ]
        golden = await store.put_bytes(jsonl(rows))
        data = toy_spec(teacher_url, synthesis={"examples": 8})
        spec = parse_spec({**data, "golden_set": golden.model_dump(mode="json")})
        ref = await store.put_bytes(spec.model_dump_json().encode(), media_type="application/json")
        await register(db, spec.name, ref)
    finally:
        await db.dispose()
    return CycleRequested(cycle_id=uuid.uuid4(), task_name=spec.name, producer="ops")


@pytest.mark.slow
def test_hostile_batches_on_a_running_platform(platform: Platform):
    valid = platform.valid_cycle
    asyncio.run(
        platform.publish(
            "ops", valid.subject, valid.model_dump_json().encode(), str(valid.event_id)
        )
    )

    # First every consumed subject with every kind, in one batch; then random batches.
    @settings(settings.get_profile(PROFILE), max_examples=1)
    @given(data=st.data())
    def sweep(data: st.DataObject) -> None:
        batch = [data.draw(h.message(platform, s, k)) for s in h.CONSUMED for k in h.ALL_KINDS]
        asyncio.run(send_and_settle(platform, batch))

    @settings(settings.get_profile(PROFILE))
    @given(batch=st.lists(h.message(platform), min_size=1, max_size=8))
    def batches(batch: list[h.Sent]) -> None:
        asyncio.run(send_and_settle(platform, batch))

    SEEN.clear()
    sweep()
    batches()
    print(f"\n{PROFILE}: {sum(SEEN.values())} outcomes:")
    for (kind, outcome), n in sorted(SEEN.items()):
        print(f"  {kind:28} {outcome:32} {n}")
    asyncio.run(valid_cycle_went_on(platform, valid))


async def valid_cycle_went_on(platform: Platform, valid: CycleRequested) -> None:
    db = Database(platform.db_url)
    wanted = {"distillery.synth.completed.v1", "distillery.dataset.published.v1"}
    try:
        deadline = time.monotonic() + SETTLE_S
        while True:
            _, _, rows = await outcomes(db)
            mine = {r.subject for r in rows if r.cycle_id == str(valid.cycle_id)}
            if wanted <= mine:
                break
            assert CycleFailed.subject not in mine, platform.logs()
            assert time.monotonic() < deadline, (mine, platform.logs())
            await asyncio.sleep(0.5)
    finally:
        await db.dispose()
