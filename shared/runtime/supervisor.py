"""Supervises service processes for `distillery up`: restart on death, back off, give up.

Each service is `python -m shared.runtime.serve <entry>` in a session of its own, so a Ctrl-C at
the terminal reaches only the supervisor, which then stops the children in order, and a stop
signal reaches a service's own worker processes too (it is sent to the process group). A
supervisor killed outright (SIGKILL) takes its children with it: each asks Linux for a SIGTERM
when its parent dies (serve.die_with_supervisor).

Policy: a child that exits for any reason while it should be running has crashed. It is
started again after a delay that doubles from 1 s to 30 s (reset once a run outlives the crash
window); after 5 crashes within 60 s it is marked failed and left alone, and the others go on.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import threading
import time
from collections import deque
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from enum import StrEnum
from pathlib import Path

from .registry import ServiceSpec
from .serve import SUPERVISOR_PID


class State(StrEnum):
    RUNNING = "running"
    RESTARTING = "restarting"
    FAILED = "failed"
    STOPPED = "stopped"


@dataclass(frozen=True)
class RestartPolicy:
    backoff_initial_s: float = 1.0
    backoff_max_s: float = 30.0
    max_crashes: int = 5
    crash_window_s: float = 60.0
    stop_timeout_s: float = 10.0


@dataclass
class Child:
    spec: ServiceSpec
    state: State = State.STOPPED
    proc: subprocess.Popen[bytes] | None = None
    restarts: int = 0
    started_at: float | None = None
    next_start_at: float = 0.0
    backoff_s: float = 0.0
    last_exit: int | None = None
    crashes: deque[float] = field(default_factory=deque)

    @property
    def name(self) -> str:
        return self.spec.name

    @property
    def pid(self) -> int | None:
        return self.proc.pid if self.proc is not None and self.state is State.RUNNING else None

    def uptime(self, now: float) -> float | None:
        if self.state is not State.RUNNING or self.started_at is None:
            return None
        return now - self.started_at


ChangeCallback = Callable[[Child, str], None]


def serve_command(entry: str) -> list[str]:
    return [sys.executable, "-m", "shared.runtime.serve", entry]


class Supervisor:
    def __init__(
        self,
        specs: list[ServiceSpec],
        *,
        env: Mapping[str, str],
        log_dir: Path,
        env_for: Mapping[str, Mapping[str, str]] | None = None,
        cwd: Path | None = None,
        policy: RestartPolicy | None = None,
        on_change: ChangeCallback | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.children = [Child(spec) for spec in specs]
        self.env = dict(env)
        # Per service, on top of `env`: each one's own bus credentials, never another's.
        self.env_for = {name: dict(extra) for name, extra in (env_for or {}).items()}
        self.log_dir = Path(log_dir)
        self.cwd = cwd
        self.policy = policy or RestartPolicy()
        self.on_change = on_change or (lambda child, message: None)
        self.clock = clock

    def log_path(self, child: Child) -> Path:
        return self.log_dir / f"{child.name}.log"

    def start(self) -> None:
        self.log_dir.mkdir(parents=True, exist_ok=True)
        for child in self.children:
            child.backoff_s = self.policy.backoff_initial_s
            self._spawn(child)

    def tick(self) -> None:
        """Reap children that died and start those whose backoff is over."""
        now = self.clock()
        for child in self.children:
            if child.state is State.RUNNING and child.proc is not None:
                code = child.proc.poll()
                if code is not None:
                    self._crashed(child, code, now)
            elif child.state is State.RESTARTING and now >= child.next_start_at:
                child.restarts += 1
                self._spawn(child)

    def run(self, stop: threading.Event, interval_s: float = 0.2) -> None:
        """Tick until `stop` is set; for callers that supervise from a thread (the demo)."""
        while not stop.wait(interval_s):
            self.tick()

    def stop(self) -> None:
        """SIGTERM every running child's group, SIGKILL what is left after the timeout."""
        running = [c for c in self.children if c.state is State.RUNNING and c.proc is not None]
        for child in running:
            _signal_group(child.proc, signal.SIGTERM)
        deadline = self.clock() + self.policy.stop_timeout_s
        for child in running:
            try:
                child.proc.wait(max(0.0, deadline - self.clock()))
            except subprocess.TimeoutExpired:
                _signal_group(child.proc, signal.SIGKILL)
                child.proc.wait()
                timeout = self.policy.stop_timeout_s
                self.on_change(child, f"did not stop within {timeout:g}s; killed")
        for child in self.children:
            if child.state is not State.FAILED:
                child.state = State.STOPPED
                self.on_change(child, "stopped")

    def _spawn(self, child: Child) -> None:
        path = self.log_path(child)
        with path.open("ab") as log:
            stamp = datetime.now(UTC).isoformat(timespec="seconds")
            log.write(f"--- {stamp} supervisor: starting {child.spec.entry} ---\n".encode())
            log.flush()
            try:
                child.proc = subprocess.Popen(
                    serve_command(child.spec.entry),
                    env={
                        **self.env,
                        **self.env_for.get(child.name, {}),
                        SUPERVISOR_PID: str(os.getpid()),  # serve.die_with_supervisor
                    },
                    cwd=self.cwd,
                    stdin=subprocess.DEVNULL,
                    stdout=log,
                    stderr=subprocess.STDOUT,
                    start_new_session=True,
                )
            except OSError as exc:
                child.proc = None
                self._crashed(child, None, self.clock(), reason=f"could not start: {exc}")
                return
        child.state = State.RUNNING
        child.started_at = self.clock()
        verb = "restarted" if child.restarts else "started"
        self.on_change(child, f"{verb} (pid {child.proc.pid})")

    def _crashed(self, child: Child, code: int | None, now: float, reason: str = "") -> None:
        child.last_exit = code
        reason = reason or _describe_exit(code)
        ran_for = now - child.started_at if child.started_at is not None else 0.0
        if ran_for >= self.policy.crash_window_s:
            child.backoff_s = self.policy.backoff_initial_s
        child.crashes.append(now)
        while child.crashes and now - child.crashes[0] > self.policy.crash_window_s:
            child.crashes.popleft()
        if len(child.crashes) >= self.policy.max_crashes:
            child.state = State.FAILED
            self.on_change(
                child,
                f"{reason}; failed: {len(child.crashes)} crashes within "
                f"{self.policy.crash_window_s:g}s, not restarting (see {self.log_path(child)})",
            )
            return
        child.state = State.RESTARTING
        child.next_start_at = now + child.backoff_s
        self.on_change(child, f"{reason}; restarting in {child.backoff_s:g}s")
        child.backoff_s = min(child.backoff_s * 2, self.policy.backoff_max_s)


def _describe_exit(code: int | None) -> str:
    if code is None:
        return "exited"
    if code < 0:
        try:
            return f"killed by {signal.Signals(-code).name}"
        except ValueError:
            return f"killed by signal {-code}"
    return f"exited with code {code}"


def _signal_group(proc: subprocess.Popen[bytes], sig: int) -> None:
    if proc.poll() is not None:
        return
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, sig)
