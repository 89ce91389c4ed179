"""The demo's analysis phase: before any student exists, production traffic reaches the task's
teacher through the gateway and is captured as traces (the seed's "analysis" phase).

A key is made for the demo's users, a few of them send the pack's production tickets on the
`openai` client (traffic.py), and the phase waits until the feedback-collector has stored a
trace for every answered request, then prints its online figures (`distillery feedback
stats`): what the clients measured next to what the platform recorded.
"""

from __future__ import annotations

import json
import subprocess
import time
from collections.abc import Callable
from pathlib import Path

from .traffic import User, production_tickets, simulate

TASK = "ticket-triage"
# Sixteen people behind two connections: the A/B split is sticky per user.
USERS = tuple(User(f"user-{n:02d}") for n in range(16))
CONCURRENCY = 2  # the candidate answers on two cores too: more would measure its queue
# Under the drift watch's smallest tested window (FEEDBACK_DRIFT_MIN_WINDOW, 50): the phase
# shows capture; drift is measured on traffic that comes after a dataset exists.
ANALYSIS_REQUESTS = 48
CAPTURE_WAIT_S = 60.0
ROUND = 24  # production requests between two looks at the rollout
PRODUCTION_TIMEOUT_S = 1200.0
FINISHED = ("full", "rolled_back")

Cli = Callable[..., subprocess.CompletedProcess[str]]


def analysis(
    home: Path,
    pack: Path,
    gateway: str,
    cli: Cli,
    announce: Callable[[str], None],
    requests: int = ANALYSIS_REQUESTS,
) -> str:
    """Returns the users' API key."""
    key = cli(home, "gateway", "keys", "create", "demo-users", "--task", TASK).stdout.strip()
    announce(
        f"analysis: {len(USERS)} users send {requests} production tickets to {gateway}, "
        f"{CONCURRENCY} at a time "
        "(the task routes to its teacher until a student is rolled out)"
    )
    traffic = simulate(gateway, key, TASK, production_tickets(pack, requests), USERS, CONCURRENCY)
    announce(f"analysis: {traffic.line()}")
    answered = sum(s.ok for s in traffic.sent)
    stored = _wait_for_traces(home, cli, answered)
    if stored < answered:
        announce(f"analysis: only {stored} of {answered} answered requests stored as traces")
    else:
        announce(f"analysis: {stored} traces stored by the feedback-collector; its figures:")
    for line in cli(home, "feedback", "stats", TASK).stdout.rstrip().splitlines():
        announce(f"  {line}")
    return key


def _wait_for_traces(home: Path, cli: Cli, answered: int) -> int:
    """Traces stored for the task, once they reach `answered` or CAPTURE_WAIT_S passes."""
    deadline, stored = time.monotonic() + CAPTURE_WAIT_S, 0
    while time.monotonic() < deadline:
        lines = cli(home, "feedback", "stats", TASK, "--json").stdout.splitlines()
        figures = [json.loads(line) for line in lines]
        # Shadow replies are counted under their own stage; the clients saw live answers.
        stored = sum(f["requests"] for f in figures if f["stage"] != "shadow")
        if stored >= answered:
            break
        time.sleep(1.0)
    return stored


def production(
    pack: Path,
    gateway: str,
    key: str,
    stage_of: Callable[[], str | None],
    announce: Callable[[str], None],
    timeout_s: float,
    tickets: int = 400,
) -> str | None:
    """After a variant is chosen: the users go on sending tickets, in rounds, while the
    deployer moves the rollout on the figures their traffic makes (the gateway mirrors shadow
    traffic, the collector counts, the rule decides). The pool of tickets after the analysis
    phase's is sent round and round (production repeats itself too) until the rollout is full
    or rolled back, or `timeout_s` passes; returns the last stage seen."""
    pool = production_tickets(pack, tickets)[ANALYSIS_REQUESTS:]
    deadline, sent, stage = time.monotonic() + timeout_s, 0, stage_of()
    while time.monotonic() < deadline and stage not in FINISHED:
        batch = [pool[(sent + i) % len(pool)] for i in range(ROUND)]
        traffic = simulate(gateway, key, TASK, batch, USERS, CONCURRENCY, seed=sent)
        sent += len(batch)
        announce(f"production: {traffic.line()} (rollout: {stage or 'not started'})")
        stage = stage_of()
    if stage not in FINISHED:
        announce(f"production: the rollout is {stage or 'not started'} after {sent} requests")
    return stage
