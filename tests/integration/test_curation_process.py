"""The curation service as a real process on the session's nats-server: synth.completed in,
dataset.published out on the bus, sent by the service's own outbox relay."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import pytest

from shared.bus import JetStreamPublisher, make_broker
from shared.db import Database
from shared.events.catalog import DatasetPublished
from shared.relay import OutboxRelay
from tests.fixtures.processes import serve, stop
from tests.fixtures.streams import stream_messages
from tests.integration.test_curation_service import apply_spec, store, synth_event, synth_rows

pytestmark = pytest.mark.slow


async def test_service_process_turns_a_batch_into_a_published_dataset(
    nats_server, sqlite_db: Database, tmp_path: Path
):
    artifacts = store(tmp_path)
    spec_ref = await apply_spec(artifacts)
    event = await synth_event(artifacts, spec_ref, synth_rows(30))
    async with sqlite_db.uow() as uow:
        await uow.publish(event)
        await uow.commit()
    async with make_broker(nats_server.url, client_name="synth-data") as broker:
        await broker.connect()
        relay = OutboxRelay(sqlite_db, JetStreamPublisher(broker), producer="synth-data")
        assert await relay.drain() == 1

    proc = serve(
        "curation.main:create_app",
        nats_server.url,
        sqlite_db.url,
        DISTILLERY_ARTIFACT_ROOT=str(tmp_path / "artifacts"),
        DISTILLERY_ACK_WAIT_S="10",
    )
    try:
        deadline = time.monotonic() + 90
        answers: list[DatasetPublished] = []
        while not answers:
            assert time.monotonic() < deadline, "no dataset.published on the bus in time"
            assert proc.poll() is None, f"service exited with {proc.returncode}"
            await asyncio.sleep(0.5)
            try:
                msgs = await stream_messages(nats_server.url, DatasetPublished.subject)
            except TimeoutError:  # nats-py's fetch on a subject with nothing stored yet
                continue
            answers = [
                a
                for a in (DatasetPublished.model_validate_json(m.data) for m in msgs)
                if a.causation_id == event.event_id
            ]
    finally:
        stop(proc)
    [answer] = answers
    assert answer.producer == "curation" and answer.cycle_id == event.cycle_id
    assert answer.train_examples + answer.validation_examples == 30
    assert await artifacts.exists(answer.manifest)
