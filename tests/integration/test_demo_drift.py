"""The demo's drift phase reads the feedback-collector's alarm and the cycle it requested from
the outbox (the events of record), and only those that came since the first cycle began."""

from __future__ import annotations

import asyncio
import uuid

from shared.cli import demo_drift
from shared.cli.demo_drift import Drift
from shared.cli.results_render import markdown
from shared.cli.traffic import Sent, Traffic
from shared.db import Database
from shared.db.migrate import upgrade
from shared.events import CycleRequested
from shared.events.production import DriftDetected


def _alarm(score: float) -> DriftDetected:
    return DriftDetected(
        producer="feedback-collector",
        task_name="ticket-triage",
        kind="input",
        score=score,
        threshold=0.01,
        window_start="a",
        window_end="b",
        window_size=48,
    )


def _stage(url: str, *events) -> None:
    async def go() -> None:
        db = Database(url)
        try:
            async with db.uow() as uow:
                await uow.publish(*events)
                await uow.commit()
        finally:
            await db.dispose()

    asyncio.run(go())


def test_only_the_collectors_request_since_the_first_cycle_began_counts(tmp_path):
    url = f"sqlite+aiosqlite:///{tmp_path / 'demo.db'}"
    upgrade(url)
    earlier = CycleRequested(
        producer="feedback-collector", cycle_id=uuid.uuid4(), task_name="ticket-triage"
    )
    _stage(url, earlier, _alarm(0.5))
    first = CycleRequested(producer="cli", cycle_id=uuid.uuid4(), task_name="ticket-triage")
    _stage(url, first)
    since = demo_drift._started(url, first.cycle_id)
    assert since is not None
    # An operator's request is not the loop's; nor is anything from before the first cycle.
    assert demo_drift._requested_since(url, since) is None
    assert demo_drift._alarm_since(url, since) is None

    second = CycleRequested(
        producer="feedback-collector",
        cycle_id=uuid.uuid4(),
        task_name="ticket-triage",
        reason="drift",
    )
    _stage(url, _alarm(0.7), second)
    found = demo_drift._requested_since(url, since)
    assert found["cycle_id"] == str(second.cycle_id) and found["reason"] == "drift"
    assert demo_drift._alarm_since(url, since)["score"] == 0.7


def test_quality_on_the_new_kind_is_reported_before_and_after():
    def traffic(right: int, wrong: int) -> Traffic:
        sent = [Sent(user="u", ms=1.0, ok=True, right=True)] * right
        sent += [Sent(user="u", ms=1.0, ok=True, right=False)] * wrong
        return Traffic(sent=sent)

    drift = Drift(traffic(6, 42), alarm=_alarm(0.7).model_dump(mode="json"))
    drift.cycle_id, drift.reason, drift.after = uuid.uuid4(), "drift", traffic(40, 8)
    drift.feedback_rows, drift.payroll_rows = 61, 37
    md = markdown(
        {"cycle_id": "c", "task": "t", "outcome": "o", "wall_s": 60.0, "teacher_label": "x",
         "training_curve": [], "drift": drift.summary()}
    )  # fmt: skip
    assert "| before the retrain (first student) | 6 of 48 right (12%) |" in md
    assert "| alarm | input drift, 0.7 over 0.01 on 48 requests |" in md
    assert f"| cycle it started | {drift.cycle_id} (drift) |" in md
    assert "| its feedback rows (of them payroll) | 61 (37) |" in md
    assert "| after the retrain (second student, other tickets) | 40 of 48 right (83%) |" in md

    unfinished = Drift(traffic(6, 42)).summary()
    assert unfinished["after"] is None and unfinished["cycle_id"] is None
    assert "| after the retrain (second student, other tickets) | not measured |" in markdown(
        {"cycle_id": "c", "task": "t", "outcome": "o", "wall_s": 60.0, "teacher_label": "x",
         "training_curve": [], "drift": unfinished}
    )  # fmt: skip
