"""The demo's drift phase: production changes under a fully rolled-out student, and the loop
answers by itself.

Tickets about a product line the task predates (the pack's payroll.py: Tillwise Payroll) reach
the live student. The simulated users judge its answers against the tickets' labels, so the
student's quality on the new kind is measured where it is served, not estimated; they correct
or rate down what it gets wrong, as they do all along. Nothing here starts a cycle: the
feedback-collector's watch compares the live inputs with the dataset the student was trained
on (MMD over all-MiniLM-L6-v2 embeddings), publishes `drift.detected` and requests the next
cycle with the feedback rows as its data. The phase shows that alarm, follows the cycle it
started to its verdict, rolls the new student out on production traffic as the first one was,
and measures the new kind again on tickets neither student saw.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any
from uuid import UUID

from sqlalchemy import func, select

from shared.artifacts import LocalArtifactStore
from shared.db import Database, OutboxRow
from shared.events import CycleRequested
from shared.events.base import ArtifactRef
from shared.events.production import DriftDetected

from .demo_events import SELECTED, Follower
from .demo_traffic import CONCURRENCY, PRODUCTION_TIMEOUT_S, ROUND, TASK, USERS, production
from .traffic import Ticket, Traffic, drift_tickets, production_tickets, simulate

MEASURED = 48  # new-kind tickets answered before, and again after (other tickets)
DETECT_TIMEOUT_S = 900.0
# The watch's settings for the demo (env defaults; FeedbackSettings): feedback becomes examples
# every 10 s, and drift is tested every 15 s on the latest 96 live inputs, none before 96 have
# come. So the 48 measured payroll tickets and two rounds after them (72 of the 96 payroll)
# make the first window, and the teacher has had those rounds' time to confirm the users'
# corrections of the first 48: the cycle an alarm starts carries them. No cooldown, so an
# alarm can come within minutes of the change.
WATCH = {
    "FEEDBACK_BUILD_EVERY_S": "10",
    "FEEDBACK_DRIFT_EVERY_S": "15",
    "FEEDBACK_DRIFT_WINDOW": "96",
    "FEEDBACK_DRIFT_MIN_WINDOW": "96",
    "FEEDBACK_COOLDOWN_S": "0",
}


@dataclass
class Drift:
    before: Traffic | None = None
    alarm: dict[str, Any] | None = None
    cycle_id: UUID | None = None
    reason: str | None = None
    after: Traffic | None = None
    feedback_rows: int | None = None  # in the cycle's feedback dataset
    payroll_rows: int | None = None  # of them, the new kind

    def summary(self) -> dict[str, Any]:
        """For the results table: quality on the new kind where it is served."""
        return {
            "kind": "Tillwise Payroll tickets (a product line the task predates)",
            "before": _share(self.before) if self.before else None,
            "after": _share(self.after) if self.after else None,
            "alarm": self.alarm,
            "cycle_id": str(self.cycle_id) if self.cycle_id else None,
            "reason": self.reason,
            "feedback_rows": self.feedback_rows,
            "payroll_rows": self.payroll_rows,
        }


def _share(traffic: Traffic) -> dict[str, int]:
    answered = [s for s in traffic.sent if s.right is not None]
    return {"right": sum(bool(s.right) for s in answered), "answered": len(answered)}


def new_kind(pack: Path) -> list[Ticket]:
    return drift_tickets(pack, 240)


def begin(
    drift: Drift,
    pack: Path,
    gateway: str,
    key: str,
    db_url: str,
    announce: Callable[[str], None],
    first_cycle: UUID,
    artifacts: Path | None = None,
) -> None:
    """New-kind tickets reach the live student, mixed into ordinary traffic, until the
    feedback-collector requests a cycle (or DETECT_TIMEOUT_S passes: `cycle_id` stays None).
    A request it made since `first_cycle` began counts too: the examples its users' feedback
    made may have started one the moment that cycle ended."""
    since = _started(db_url, first_cycle)
    payroll, ordinary = new_kind(pack), production_tickets(pack, 400)[-96:]
    before = simulate(gateway, key, TASK, payroll[:MEASURED], USERS, CONCURRENCY, seed=1)
    right = _share(before)
    announce(
        f"drift: a new product line (Tillwise Payroll) reaches the live student: "
        f"{right['right']} of {right['answered']} payroll tickets answered right; "
        f"{before.line()}"
    )
    drift.before = before
    deadline, sent = time.monotonic() + DETECT_TIMEOUT_S, 0
    # The measured tickets stay unseen by the next student: rounds draw from the rest.
    pool = payroll[2 * MEASURED :]
    while time.monotonic() < deadline:
        found = _requested_since(db_url, since)
        if found is not None:
            drift.cycle_id, drift.reason = UUID(found["cycle_id"]), found["reason"]
            drift.alarm = _alarm_since(db_url, since)
            break
        half = ROUND // 2
        batch = [pool[(sent + i) % len(pool)] for i in range(half)]
        batch += [ordinary[(sent + i) % len(ordinary)] for i in range(half)]
        traffic = simulate(gateway, key, TASK, batch, USERS, CONCURRENCY, seed=100 + sent)
        sent += half
        announce(f"drift: {traffic.line()} (half of them payroll)")
    if drift.cycle_id is None:
        announce(f"drift: no cycle was requested within {DETECT_TIMEOUT_S:.0f} s")
        return
    if drift.alarm:
        a = drift.alarm
        announce(
            f"drift.detected: {a['kind']} drift, statistic {a['score']:.4g} over threshold "
            f"{a['threshold']:.4g} on the latest {a['window_size']} requests"
        )
        for reason in a.get("evidence", [])[:2]:
            announce(f"  evidence: {json.dumps(reason)[:160]}")
    announce(f"cycle {drift.cycle_id} requested by the feedback-collector ({drift.reason})")
    if found.get("feedback_dataset") and artifacts is not None:
        rows = _jsonl(artifacts, found["feedback_dataset"])
        drift.feedback_rows = len(rows)
        drift.payroll_rows = sum("payroll" in r.get("input", "").lower() for r in rows)
        announce(
            f"  its feedback rows: {drift.feedback_rows}, {drift.payroll_rows} of them payroll "
            "tickets (the users' corrections and the teacher's relabels)"
        )


def measure_after(
    pack: Path, gateway: str, key: str, drift: Drift, announce: Callable[[str], None]
) -> None:
    """The new kind again, on the retrained student: tickets neither student was asked."""
    tickets = new_kind(pack)[MEASURED : 2 * MEASURED]
    drift.after = simulate(gateway, key, TASK, tickets, USERS, CONCURRENCY, seed=2)
    before, after = _share(drift.before or Traffic()), _share(drift.after)
    announce(
        f"drift: payroll tickets answered right: {before['right']} of {before['answered']} "
        f"before the retrain, {after['right']} of {after['answered']} after"
    )


def second_turn(
    pack: Path,
    gateway: str,
    key: str,
    db_url: str,
    announce: Callable[[str], None],
    timeout_s: float,
    first_cycle: UUID,
    artifacts: Path | None = None,
) -> Drift:
    """The flywheel's second turn: drift, the cycle it starts (followed for up to
    `timeout_s`), that student's rollout, and the new kind measured again once it is live.
    Ctrl-C or a failure ends the phase, not the demo: what was measured is returned and the
    first cycle's results still follow."""
    drift = Drift()
    try:
        begin(drift, pack, gateway, key, db_url, announce, first_cycle, artifacts)
        if drift.cycle_id is None:
            return drift
        follower = Follower(db_url, drift.cycle_id, announce)
        if not follower.follow(timeout_s):
            announce(f"drift: the second cycle reached no verdict within {timeout_s:.0f} s")
        elif follower.verdict == SELECTED:
            stage = production(
                pack, gateway, key, follower.rollout_stage, announce, PRODUCTION_TIMEOUT_S
            )
            if stage == "full":
                measure_after(pack, gateway, key, drift, announce)
    except KeyboardInterrupt:
        announce("drift: stopped (Ctrl-C); what it measured goes into the results")
    except Exception as exc:  # a demo phase: say what broke, keep what was measured
        announce(f"drift: phase ended by {type(exc).__name__}: {exc}")
    return drift


def _jsonl(artifacts: Path, ref: dict[str, Any]) -> list[dict[str, Any]]:
    data = LocalArtifactStore(artifacts).get_bytes(ArtifactRef.model_validate(ref))
    return [json.loads(line) for line in data.decode().splitlines() if line.strip()]


def _started(db_url: str, cycle_id: UUID) -> datetime | None:
    async def read() -> datetime | None:
        db = Database(db_url)
        try:
            async with db.uow() as uow:
                stmt = select(func.min(OutboxRow.occurred_at)).where(
                    OutboxRow.cycle_id == str(cycle_id)
                )
                return await uow.session.scalar(stmt)
        finally:
            await db.dispose()

    return asyncio.run(read())


def _rows_since(db_url: str, subject: str, since: datetime | None) -> list[dict[str, Any]]:
    async def read() -> list[str]:
        db = Database(db_url)
        try:
            async with db.uow() as uow:
                stmt = select(OutboxRow.payload).where(
                    OutboxRow.subject == subject, OutboxRow.producer == "feedback-collector"
                )
                if since is not None:
                    stmt = stmt.where(OutboxRow.occurred_at > since)
                rows = await uow.session.scalars(stmt.order_by(OutboxRow.occurred_at))
                return list(rows.all())
        finally:
            await db.dispose()

    return [json.loads(p) for p in asyncio.run(read())]


def _requested_since(db_url: str, since: datetime | None) -> dict[str, Any] | None:
    rows = _rows_since(db_url, CycleRequested.subject, since)
    return rows[0] if rows else None


def _alarm_since(db_url: str, since: datetime | None) -> dict[str, Any] | None:
    rows = _rows_since(db_url, DriftDetected.subject, since)
    return rows[-1] if rows else None
