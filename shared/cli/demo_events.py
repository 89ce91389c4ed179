"""What `distillery demo` shows of a cycle: its events as they commit, read from the embedded
runtime's outbox (the events of record), and the last evaluation's report."""

from __future__ import annotations

import asyncio
import json
import time
from pathlib import Path
from typing import Any
from uuid import UUID

from sqlalchemy import select

from shared.artifacts import LocalArtifactStore
from shared.db import Database, OutboxRow
from shared.events.base import ArtifactRef

# The cycle's verdict: it failed, or a passing adapter was quantized and one serving form
# chosen; the rollout that follows is production traffic's (demo_traffic.production).
SELECTED = "distillery.variant.selected.v1"
FINAL = ("distillery.cycle.failed.v1", SELECTED)
ROLLOUT = "distillery.rollout.changed.v1"


async def _events(db_url: str, cycle_id: str) -> list[tuple[str, str, dict[str, Any]]]:
    db = Database(db_url)
    try:
        async with db.uow() as uow:
            rows = await uow.session.execute(
                select(OutboxRow.event_id, OutboxRow.subject, OutboxRow.payload)
                .where(OutboxRow.cycle_id == cycle_id)
                .order_by(OutboxRow.occurred_at)
            )
            return [(e, s, json.loads(p)) for e, s, p in rows.all()]
    finally:
        await db.dispose()


def describe(subject: str, p: dict[str, Any]) -> str:
    name = subject.removeprefix("distillery.").rsplit(".v", 1)[0]
    if name == "synth.completed":
        return f"{name}: {p['examples']} examples {p['examples_per_slice']}, ${p['cost_usd']:.4f}"
    if name == "dataset.published":
        return (
            f"{name}: {p['train_examples']} train / {p['validation_examples']} validation, "
            f"version {p['dataset_version'][:12]}"
        )
    if name == "training.progressed":
        loss = f"{p['loss']:.3f}" if p.get("loss") is not None else "-"
        return f"{name}: step {p['step']}/{p['total_steps']} loss {loss}"
    if name == "training.completed":
        return f"{name}: validation loss {p.get('validation_loss')}, {p['hyperparameters']}"
    if name == "evaluation.completed":
        gates = ", ".join(
            f"{g['name']} {'pass' if g['passed'] else 'FAIL'} ({g['value']} vs {g['threshold']})"
            for g in p["gates"]
        )
        verdict = "PASSED" if p["passed"] else "failed"
        return f"{name}: {verdict}; {gates}; failing slices {p['failing_slices']}"
    if name == "variant.selected":
        forms = "; ".join(
            f"{v['name']} {'pass' if v.get('passed') else 'fail'}"
            + (f" p95 {v['p95_ms']:.0f} ms" if v.get("p95_ms") is not None else "")
            + (f" retention {v['retention']:.3f}" if v.get("retention") is not None else "")
            for v in p["variants"]
        )
        return f"{name}: {p['chosen']} on {p['chosen_engine']}: {p['reason']} [{forms}]"
    if name == "rollout.changed":
        return f"{name}: {p['stage']} at {p['traffic_share']:.0%} of traffic: {p['reason']}"
    if name == "feedback.dataset.published":
        return (
            f"{name}: {p['examples']} examples from {p['request_ids']} production requests, "
            "for curation to merge"
        )
    if name == "cycle.iteration.requested":
        return f"{name}: iteration {p['iteration']} for {p['failing_slices']}"
    if name == "cycle.failed":
        return f"{name}: at {p['stage']}: {p['reason']}"
    return name


class Follower:
    """A cycle's events, each announced once as it commits."""

    def __init__(self, db_url: str, cycle_id: UUID, announce) -> None:
        self.db_url, self.cycle_id, self.announce = db_url, cycle_id, announce
        self.seen: set[str] = set()
        self.verdict: str | None = None  # the FINAL subject, once reached
        self.stage: str | None = None  # the rollout's latest stage

    def poll(self) -> None:
        for event_id, subject, payload in asyncio.run(_events(self.db_url, str(self.cycle_id))):
            if event_id in self.seen:
                continue
            self.seen.add(event_id)
            self.announce(describe(subject, payload))
            if subject in FINAL and self.verdict is None:
                self.verdict = subject
            if subject == ROLLOUT:
                self.stage = payload["stage"]

    def follow(self, timeout_s: float) -> bool:
        """Announce events until the verdict; False when `timeout_s` passes first."""
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            self.poll()
            if self.verdict is not None:
                return True
            time.sleep(1.0)
        return False

    def rollout_stage(self) -> str | None:
        self.poll()
        return self.stage


def last_report(db_url: str, artifact_root: Path, cycle_id: UUID) -> str | None:
    """report.md of the cycle's last evaluation, read from the embedded artifact folder."""
    evaluations = [
        p
        for _, subject, p in asyncio.run(_events(db_url, str(cycle_id)))
        if subject == "distillery.evaluation.completed.v1"
    ]
    if not evaluations:
        return None
    store = LocalArtifactStore(artifact_root)
    body = json.loads(store.get_bytes(ArtifactRef.model_validate(evaluations[-1]["report"])))
    markdown = ArtifactRef.model_validate(body["artifacts"]["report.md"])
    return store.get_bytes(markdown).decode()
