"""The flywheel's step of the e2e loop: drift in production starts the next cycle by itself.

Tickets about a product line the task never mentions (payroll) reach the gateway; the live
model (the student, once fully rolled out) was never taught them. Two users of an app send
the same correction for one. The feedback-collector makes that a trusted example, its drift
watch finds the latest live inputs unlike the cycle's published dataset (MMD on
all-MiniLM-L6-v2), and the alarm starts a cycle whose feedback dataset holds the correction;
curation merges it.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import httpx2
from sqlalchemy import select

from feedback_collector.models import ExampleRow
from shared.artifacts import LocalArtifactStore
from shared.cli.traffic import Ticket
from shared.db import OutboxRow
from shared.events.catalog import CycleRequested, DatasetPublished, DriftDetected
from shared.events.production import FeedbackDatasetPublished

from .harness import distillery, events_of, logs, wait_for, wait_for_rows

WINDOW = 16
# Feedback becomes examples every 2 s; only drift may start the cycle (not the example count);
# the watch tests the latest WINDOW live inputs every 3 s.
WATCH = {
    "FEEDBACK_BUILD_EVERY_S": "2",
    "FEEDBACK_MIN_NEW_EXAMPLES": "1000",
    "FEEDBACK_COOLDOWN_S": "0",
    "FEEDBACK_DRIFT_EVERY_S": "3",
    "FEEDBACK_DRIFT_WINDOW": str(WINDOW),
    "FEEDBACK_DRIFT_MIN_WINDOW": str(WINDOW),
}
MONTHS = ("January", "March", "April", "May", "June", "July", "September", "November")
WRONG = ("holiday pay", "net wages", "sick pay", "bonus tax")
PAYROLL = [
    f"Subject: {month} payroll\n\nTillwise Payroll got the {what} wrong for {2 + i} employees "
    f"on the {month} payslips. Our accountant needs the corrected figures before the tax filing."
    for i, (month, what) in enumerate((m, w) for m in MONTHS for w in WRONG)
][:WINDOW]
CORRECTION = json.dumps(
    {
        "category": "technical",
        "priority": "high",
        "product": "none",
        "needs_human": True,
        "language": "en",
    }
)


def trained_tickets(home: Path, cycle_id: str) -> list[Ticket]:
    """The user inputs of the cycle's published train split, with their labels: traffic the
    drift watch's reference holds, so none of it is drift."""
    [published] = [
        DatasetPublished.model_validate(p)
        for s, p in events_of(home, cycle_id)
        if s == DatasetPublished.subject
    ]
    store = LocalArtifactStore(home / "artifacts")
    tickets = []
    for line in store.get_bytes(published.train).decode().splitlines():
        messages = json.loads(line)["messages"]
        text = next(m["content"] for m in messages if m["role"] == "user")
        label = next(m["content"] for m in messages if m["role"] == "assistant")
        tickets.append(Ticket(text, json.loads(label)))
    return tickets


def drift_into_the_next_cycle(
    home: Path, port: int
) -> tuple[DriftDetected, CycleRequested, list[tuple[str, dict]]]:
    """Returns the alarm, the cycle it started, and that cycle's (input, output) rows that came
    from production feedback."""
    made = distillery(home, "gateway", "keys", "create", "e2e-users", "--task", "ticket-triage")
    assert made.returncode == 0, made.stderr
    auth = {"Authorization": f"Bearer {made.stdout.strip()}"}
    with httpx2.Client(base_url=f"http://127.0.0.1:{port}", headers=auth, timeout=60) as http:

        def ask(text: str) -> str:
            body = {"model": "ticket-triage", "messages": [{"role": "user", "content": text}]}
            deadline = time.monotonic() + 60
            # 401 until the gateway has read the new key; 429 past the key's burst (a second's
            # worth of its rate), with Retry-After, as a well-behaved client honours it.
            while (answer := http.post("/v1/chat/completions", json=body)).status_code in (
                401,
                429,
            ):
                assert time.monotonic() < deadline, answer.text
                time.sleep(float(answer.headers.get("Retry-After", 1)))
            assert answer.status_code == 200, answer.text
            return answer.headers["X-Request-Id"]

        request_id = ask(PAYROLL[0])
        fix = {"model": "ticket-triage", "request_id": request_id, "correction": CORRECTION}
        for user in ("ann", "bob"):
            sent = http.post("/v1/feedback", json=fix, headers={"X-Distillery-User": user})
            assert sent.status_code == 202, sent.text
        # The correction is a trusted example before the window fills, so the cycle the alarm
        # starts carries it.
        built = wait_for_rows(home, select(ExampleRow.example_id), 1, 60)
        assert built, f"the correction became no example\n{logs(home)}"
        for text in PAYROLL[1:]:
            ask(text)
    started = wait_for_rows(
        home,
        select(OutboxRow.payload).where(
            OutboxRow.subject == CycleRequested.subject,
            OutboxRow.producer == "feedback-collector",
        ),
        1,
        180,
    )
    assert started, f"the drift watch started no cycle\n{logs(home)}"
    requested = CycleRequested.model_validate_json(started[0])
    [alarm] = [
        DriftDetected.model_validate_json(p)
        for p in wait_for_rows(
            home, select(OutboxRow.payload).where(OutboxRow.subject == DriftDetected.subject), 1, 10
        )
    ]
    [announced] = [
        FeedbackDatasetPublished.model_validate(p)
        for s, p in events_of(home, str(requested.cycle_id))
        if s == FeedbackDatasetPublished.subject
    ]
    assert announced.dataset == requested.feedback_dataset
    events = wait_for(home, str(requested.cycle_id), DatasetPublished.subject, timeout=300)
    published = DatasetPublished.model_validate(
        next(p for s, p in events if s == DatasetPublished.subject)
    )
    store = LocalArtifactStore(home / "artifacts")
    rows = [
        json.loads(line)
        for ref in (published.train, published.validation)
        for line in store.get_bytes(ref).decode().splitlines()
    ]
    merged = [
        (
            next(m["content"] for m in r["messages"] if m["role"] == "user"),
            json.loads(next(m["content"] for m in r["messages"] if m["role"] == "assistant")),
        )
        for r in rows
        if r["id"].startswith("feedback:")
    ]
    return alarm, requested, merged
