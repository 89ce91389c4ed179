"""The demo's production traffic: a few concurrent users on the official `openai` client,
through the gateway, and what they say of the answers.

Each user is a thread with its own client and user id (`X-Distillery-User`), sending tickets
whose right labels are known by construction (the pack's `production_rows`, tickets no
training row shares a sentence with). A user compares each answer with the ticket's labels,
as a person who knows the case would: a wrong answer is corrected (the right labels, sent as
the correction) at the user's `correct_share`, else rated -1 at `complain_share`; a right one
is rated +1 at `rate_share`. So ratings and corrections follow the served model's real
mistakes, never a fixed rate. Figures are measured at the client: what a caller of the gateway sees.
"""

from __future__ import annotations

import importlib.util
import json
import random
import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

USER_HEADER = "X-Distillery-User"
KEY_WAIT_S = 30.0  # a new key or route reaches every gateway replica within seconds


@dataclass(frozen=True)
class Ticket:
    input: str
    output: dict[str, Any]  # the right labels


@dataclass(frozen=True)
class User:
    name: str
    correct_share: float = 0.4  # of wrong answers, the share this user corrects
    complain_share: float = 1.0  # of wrong answers not corrected, the share rated -1
    rate_share: float = 0.3  # of right answers, the share this user rates +1


@dataclass
class Sent:
    user: str
    ms: float
    ok: bool
    right: bool | None = None  # None: no answer to judge
    feedback: str | None = None  # "+1", "-1", "correction"; "lost": the gateway refused it


@dataclass
class Traffic:
    sent: list[Sent] = field(default_factory=list)

    def percentile(self, q: float) -> float | None:
        times = sorted(s.ms for s in self.sent if s.ok)
        if not times:
            return None
        return times[min(len(times) - 1, round(q * (len(times) - 1)))]

    def count(self, feedback: str) -> int:
        return sum(s.feedback == feedback for s in self.sent)

    def line(self) -> str:
        ok = [s for s in self.sent if s.ok]
        right = sum(bool(s.right) for s in ok)
        p50, p95 = self.percentile(0.5), self.percentile(0.95)
        times = f"P50 {p50:.0f} ms, P95 {p95:.0f} ms" if p50 is not None else "no answers"
        users = len({s.user for s in self.sent})
        return (
            f"{len(self.sent)} requests from {users} users, {len(self.sent) - len(ok)} errors, "
            f"{times} at the client; {right} of {len(ok)} answers right; feedback: "
            f"{self.count('+1')} x +1, {self.count('-1')} x -1, "
            f"{self.count('correction')} corrections"
            + (f", {self.count('lost')} not accepted" if self.count("lost") else "")
        )


def pack_teacher(pack: Path) -> Any:
    """The pack's teacher.py (a script, not a package), loaded by path."""
    spec = importlib.util.spec_from_file_location("ticket_triage_teacher", pack / "teacher.py")
    if spec is None or spec.loader is None:
        raise FileNotFoundError(pack / "teacher.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def production_tickets(pack: Path, n: int) -> list[Ticket]:
    """The first n of the pack's production tickets (the stand-in teacher knows them all)."""
    rows = pack_teacher(pack).production_rows(n)
    return [Ticket(r["input"], json.loads(r["output"])) for r in rows]


def drift_tickets(pack: Path, n: int) -> list[Ticket]:
    """The first n of the pack's new kind of ticket (payroll.py), for the drift phase."""
    rows = pack_teacher(pack).payroll_rows(n)
    return [Ticket(r["input"], json.loads(r["output"])) for r in rows]


def judged(answer: str | None, truth: dict[str, Any]) -> bool | None:
    """Right when every labelled field is as the ticket's; None when there is no answer."""
    if answer is None:
        return None
    try:
        got = json.loads(answer)
    except ValueError:
        return False
    return isinstance(got, dict) and all(got.get(k) == v for k, v in truth.items())


def simulate(
    base_url: str,
    api_key: str,
    task: str,
    tickets: Sequence[Ticket],
    users: Sequence[User],
    concurrency: int = 4,
    seed: int = 0,
    on_sent: Callable[[Sent], None] | None = None,
) -> Traffic:
    """Send every ticket once, ticket i from user i mod len(users), `concurrency` at a time
    (each thread its own client), and give each answer its user's feedback. More users than
    threads, because an A/B split is sticky per user: a handful of users could all land on
    one arm. Returns what the clients saw."""
    traffic, lock = Traffic(), threading.Lock()
    work = iter(enumerate(tickets))
    ready_by = time.monotonic() + KEY_WAIT_S  # once for the run, not per request
    stop = threading.Event()  # Ctrl-C: every user stops after the request in flight

    def run() -> None:
        from openai import OpenAI

        # 429 (the key's burst) and 5xx are retried by the client, honouring Retry-After.
        client = OpenAI(base_url=base_url, api_key=api_key, max_retries=8, timeout=120)
        while True:
            with lock:
                item = None if stop.is_set() else next(work, None)
            if item is None:
                return
            number, ticket = item
            user = users[number % len(users)]
            rng = random.Random(f"{seed}/{number}")  # noqa: S311 - a simulation, not a secret
            sent = _ask(client, task, ticket, user, {USER_HEADER: user.name}, rng, ready_by, stop)
            with lock:
                traffic.sent.append(sent)
            if on_sent:
                on_sent(sent)

    pool = ThreadPoolExecutor(concurrency, thread_name_prefix="user")
    try:
        for done in [pool.submit(run) for _ in range(concurrency)]:
            done.result()
    finally:
        stop.set()
        pool.shutdown(wait=True)
    return traffic


def _ask(
    client,
    task: str,
    ticket: Ticket,
    user: User,
    headers: dict,
    rng,
    ready_by: float,
    stop: threading.Event,
) -> Sent:
    import httpx2
    from openai import APIError

    began = time.perf_counter()
    messages = [{"role": "user", "content": ticket.input}]
    while True:
        try:
            raw = client.chat.completions.with_raw_response.create(
                model=task, messages=messages, extra_headers=headers
            )
            break
        except APIError as exc:
            # 401 until the gateway has read a key made a moment ago, 404 until it has read
            # the route of a task applied a moment ago.
            ready = getattr(exc, "status_code", None) not in (401, 404)
            if not ready and time.monotonic() < ready_by and not stop.is_set():
                time.sleep(0.5)
                began = time.perf_counter()
                continue
            return Sent(user.name, (time.perf_counter() - began) * 1000, ok=False)
    ms = (time.perf_counter() - began) * 1000
    answer = raw.parse().choices[0].message.content
    right = judged(answer, ticket.output)
    body: dict[str, Any] = {"model": task, "request_id": raw.headers["X-Request-Id"]}
    if right is False and rng.random() < user.correct_share:
        body["correction"], said = json.dumps(ticket.output), "correction"
    elif right is False and rng.random() < user.complain_share:
        body["rating"], said = -1, "-1"
    elif right and rng.random() < user.rate_share:
        body["rating"], said = 1, "+1"
    else:
        return Sent(user.name, ms, ok=True, right=right)
    try:
        client.post("/feedback", cast_to=httpx2.Response, body=body, options={"headers": headers})
    except APIError:  # the answer stands; only the user's word was lost, and it is counted
        said = "lost"
    return Sent(user.name, ms, ok=True, right=right, feedback=said)
