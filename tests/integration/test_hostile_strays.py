"""A message on a stream subject that no catalog event has is recorded, never lost (issue 10,
finding 5): the stray auditor (shared/bus/audit.py) as a real process on a nats-server with
authorization on, SQLite and PostgreSQL.

The strays come from the one kind of user that may publish them there: a service the catalog
does not name (DISTILLERY_EXTRA_SERVICES, a development hook granted `distillery.>`). A catalog
identity cannot: the server refuses it (tests/integration/test_bus_auth.py).
"""

from __future__ import annotations

import asyncio
import json
import secrets
import time
import urllib.request
import uuid
from collections.abc import Iterator
from pathlib import Path

import nats
import pytest
from pydantic import SecretStr
from sqlalchemy import select

from shared.bus import JetStreamPublisher, ensure_stream, make_broker
from shared.bus.audit import AUDITOR, DURABLE
from shared.bus.auth import bcrypt_hash, render_conf
from shared.bus.broker import BusCredentials
from shared.db import Database, OutboxRow
from shared.events import STREAM_NAME
from shared.events.base import ArtifactRef
from shared.events.catalog import IDENTITIES, DeadLettered, TaskRegistered
from shared.runtime.natsd import NatsServer, free_port
from tests.fixtures.processes import serve, stop

DEV = "dev-extra"  # not a catalog identity: may publish any `distillery.>` subject


@pytest.fixture
def bus(tmp_path: Path) -> Iterator[tuple[NatsServer, dict[str, BusCredentials]]]:
    users = [*IDENTITIES, AUDITOR, DEV]
    passwords = {u: secrets.token_urlsafe(24) for u in users}
    hashes = {u: json.dumps(bcrypt_hash(p, cost=4)) for u, p in passwords.items()}
    server = NatsServer(tmp_path / "nats", authorization=render_conf(hashes)).start()
    creds = {u: BusCredentials(u, SecretStr(p)) for u, p in passwords.items()}
    asyncio.run(ensure_stream(server.url, credentials=creds["ops"]))
    yield server, creds
    server.stop()


async def publish_raw(url: str, cred: BusCredentials, subject: str, body: bytes) -> None:
    nc = await nats.connect(url, user=cred.user, password=cred.password.get_secret_value())
    try:
        await nc.jetstream().publish(subject, body, stream=STREAM_NAME, timeout=5)
    finally:
        await nc.close()


async def recorded(db: Database) -> list[DeadLettered]:
    stmt = select(OutboxRow.payload).where(
        OutboxRow.subject == DeadLettered.subject, OutboxRow.sent_at.is_not(None)
    )
    async with db.uow() as uow:
        return [DeadLettered.model_validate_json(p) for p in await uow.session.scalars(stmt)]


def stray_count(port: int) -> float:
    text = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5).read().decode()
    [line] = [x for x in text.splitlines() if x.startswith("distillery_bus_stray_messages_total")]
    return float(line.split()[-1])


@pytest.mark.slow
async def test_strays_are_counted_and_dead_lettered(bus, db: Database, tmp_path: Path):
    server, creds = bus
    cycle_id = uuid.uuid4()
    v2 = json.dumps({"cycle_id": str(cycle_id), "task_name": "t", "wanted": "v2"}).encode()
    ref = ArtifactRef(uri="file:///x", sha256="a" * 64, size_bytes=1, media_type="text/plain")
    valid = TaskRegistered(cycle_id=None, producer="ops", task_name="t", task_version=1, spec=ref)
    metrics_port = free_port()
    log = tmp_path / "auditor.log"
    proc = serve(
        "shared.runtime.auditor:create_app",
        server.url,
        db.url,
        log=log,
        DISTILLERY_NATS_USER=AUDITOR,
        DISTILLERY_NATS_PASSWORD=creds[AUDITOR].password.get_secret_value(),
        DISTILLERY_METRICS_PORT=str(metrics_port),
    )
    try:
        await publish_raw(server.url, creds[DEV], "distillery.cycle.requested.v2", v2)
        await publish_raw(server.url, creds[DEV], "distillery.made.up", b"\xff not json")
        async with make_broker(server.url, client_name="ops", credentials=creds["ops"]) as ops:
            await ops.connect()
            await JetStreamPublisher(ops).publish_event(valid)
        deadline = time.monotonic() + 60
        while len(letters := await recorded(db)) < 2:
            assert proc.poll() is None, log.read_text()[-3000:]
            assert time.monotonic() < deadline, log.read_text()[-3000:]
            await asyncio.sleep(0.3)
        assert stray_count(metrics_port) == 2
        await asyncio.sleep(1.0)  # the valid event has been read too: still two records
        assert len(await recorded(db)) == 2
    finally:
        stop(proc)

    by_subject = {letter.original_subject: letter for letter in letters}
    assert set(by_subject) == {"distillery.cycle.requested.v2", "distillery.made.up"}
    v2_letter = by_subject["distillery.cycle.requested.v2"]
    assert v2_letter.cycle_id == cycle_id and v2_letter.payload_excerpt == v2.decode()
    assert v2_letter.consumer == DURABLE and v2_letter.producer == AUDITOR
    assert v2_letter.error_kind == "validation" and "no event in the catalog" in v2_letter.reason
    assert by_subject["distillery.made.up"].cycle_id is None
    assert "Violation" not in server.log_path.read_text()


@pytest.mark.slow
async def test_the_auditor_may_only_read_and_dead_letter(bus):
    """Reading the whole stream gives no way to act on it: the auditor publishes no event of
    the loop, and no other identity may read through its consumer."""
    server, creds = bus
    ref = ArtifactRef(uri="file:///x", sha256="b" * 64, size_bytes=1, media_type="text/plain")
    forged = TaskRegistered(cycle_id=None, producer="x", task_name="t", task_version=2, spec=ref)
    async with make_broker(server.url, client_name=AUDITOR, credentials=creds[AUDITOR]) as b:
        await b.connect()
        with pytest.raises(TimeoutError):
            await JetStreamPublisher(b, timeout_s=1.0).publish_event(forged)
    nc = await nats.connect(
        server.url, user="trainer", password=creds["trainer"].password.get_secret_value()
    )
    try:
        with pytest.raises(Exception):  # noqa: B017 (a permissions violation, or its timeout)
            sub = await nc.jetstream().pull_subscribe("distillery.>", durable=DURABLE)
            await sub.fetch(1, timeout=1)
    finally:
        await nc.close()
    log = server.log_path.read_text()
    assert TaskRegistered.subject in log and "Violation" in log
