"""`distillery review` end to end, in process through Typer's CliRunner, on PostgreSQL and
SQLite: a batch waits for its reviews, the last decision publishes through the outbox."""

from __future__ import annotations

import asyncio
import json
import os
from collections.abc import Iterator
from pathlib import Path

import pytest
import structlog
from typer.testing import CliRunner

from curation.cli import app
from shared.db import Database
from shared.events.catalog import CycleFailed, DatasetPublished
from tests.integration.test_curation_service import (
    apply_spec,
    deliver,
    deps,
    outbox,
    store,
    synth_event,
    synth_rows,
)

runner = CliRunner()


@pytest.fixture(autouse=True, scope="module")
def _keep_logging_config() -> Iterator[None]:
    saved = structlog.get_config()
    yield
    structlog.configure(**saved)


def cli(home: Path, db_url: str, *args: str):
    isolated: dict[str, str | None] = {k: None for k in os.environ if k.startswith("DISTILLERY_")}
    env = {
        **isolated,
        "DISTILLERY_DATABASE_URL": db_url,
        "DISTILLERY_ARTIFACT_ROOT": str(home / "artifacts"),
        "USER": "reviewer-1",
    }
    return runner.invoke(app, [*args, "--home", str(home)], env=env)


def curate_for_review(db_url: str, home: Path, rows: list[dict], review_share: float):
    async def go():
        db = Database(db_url)
        try:
            artifacts = store(home)
            spec_ref = await apply_spec(artifacts, review_share=review_share)
            event = await synth_event(artifacts, spec_ref, rows)
            assert await deliver(deps(db, artifacts), event) == "acked"
            return event
        finally:
            await db.dispose()

    return asyncio.run(go())


def outbox_now(db_url: str, cls):
    async def go():
        db = Database(db_url)
        try:
            return await outbox(db, cls)
        finally:
            await db.dispose()

    return asyncio.run(go())


def pending_ids(home: Path, db_url: str) -> list[int]:
    result = cli(home, db_url, "list")
    assert result.exit_code == 0, result.output
    return [int(line.split()[0]) for line in result.stdout.splitlines()[1:]]


def test_review_queue_through_the_cli(db_url: str, tmp_path: Path):
    rows = synth_rows(20)
    rows.append(dict(rows[0]))
    event = curate_for_review(db_url, tmp_path, rows, review_share=0.2)
    assert outbox_now(db_url, DatasetPublished) == [], "the batch waits for its reviews"

    ids = pending_ids(tmp_path, db_url)
    assert len(ids) == 4
    first, second, third, last = ids
    shown = cli(tmp_path, db_url, "show", str(first))
    assert shown.exit_code == 0 and "input:" in shown.stdout and "(pending)" in shown.stdout

    bad = cli(tmp_path, db_url, "edit", str(first), "--output", '{"priority": "whenever"}')
    assert bad.exit_code == 1 and "schema_invalid" in bad.output
    edit = '{"priority":"high",  "team":"vip desk"}'
    assert cli(tmp_path, db_url, "edit", str(first), "--output", edit).exit_code == 0
    rejected = cli(tmp_path, db_url, "reject", str(second), "--reason", "wrong team")
    assert rejected.exit_code == 0 and "2 pending" in rejected.output
    twice = cli(tmp_path, db_url, "approve", str(second))
    assert twice.exit_code == 1 and "already rejected" in twice.output
    assert cli(tmp_path, db_url, "approve", str(third)).exit_code == 0
    assert outbox_now(db_url, DatasetPublished) == []

    final = cli(tmp_path, db_url, "approve", str(last))
    assert final.exit_code == 0, final.output
    [published] = outbox_now(db_url, DatasetPublished)
    assert published.producer == "curation" and published.causation_id == event.event_id
    assert final.stdout.strip() == published.dataset_version
    assert published.train_examples + published.validation_examples == 19

    async def read(ref):
        return await store(tmp_path).get_bytes(ref)

    manifest = json.loads(asyncio.run(read(published.manifest)))
    assert manifest["review"] == {"selected": 4, "approved": 2, "edited": 1, "rejected": 1}
    assert manifest["counts"]["rejected"] == {"exact_duplicate": 1, "review_rejected": 1}
    data = asyncio.run(read(published.train)) + asyncio.run(read(published.validation))
    assert '"content": "{\\"priority\\": \\"high\\", \\"team\\": \\"vip desk\\"}"' in data.decode()

    listed = cli(tmp_path, db_url, "rejected", "--reason", "review_rejected")
    assert listed.exit_code == 0
    [line] = listed.stdout.splitlines()
    assert "review_rejected" in line and "wrong team" in line
    assert published.dataset_version[:12] in line
    everything = cli(tmp_path, db_url, "rejected").stdout
    assert "exact_duplicate" in everything and "same input as" in everything
    assert pending_ids(tmp_path, db_url) == []


def test_rejecting_every_reviewed_row_fails_the_cycle(db_url: str, tmp_path: Path):
    curate_for_review(db_url, tmp_path, synth_rows(2), review_share=1.0)
    for review_id in pending_ids(tmp_path, db_url):
        result = cli(tmp_path, db_url, "reject", str(review_id), "--reason", "made up")
        assert result.exit_code == 0, result.output
    assert outbox_now(db_url, DatasetPublished) == []
    [failed] = outbox_now(db_url, CycleFailed)
    assert failed.stage == "curation" and "review_rejected 2" in failed.reason


def test_mounts_under_the_main_cli_as_review(db_url: str, tmp_path: Path):
    import typer

    # What `_mount_plugins` does with the `distillery.cli` entry point `review`.
    root = typer.Typer()
    root.add_typer(app, name="review")
    env = {"DISTILLERY_DATABASE_URL": db_url, "DISTILLERY_ARTIFACT_ROOT": str(tmp_path)}
    result = runner.invoke(root, ["review", "list", "--home", str(tmp_path)], env=env)
    assert result.exit_code == 0, result.output
    assert "no reviews pending" in result.output
    helped = runner.invoke(root, ["review", "--help"])
    assert all(c in helped.output for c in ("approve", "reject", "edit", "rejected", "show"))
