"""The demo's teacher: the pack's stand-in (a scripted OpenAI-compatible server on loopback) or,
with `distillery demo --teacher-url URL --teacher-model NAME`, a real endpoint."""

from __future__ import annotations

import subprocess
import sys
import time
import urllib.request
from pathlib import Path

from shared.runtime.natsd import free_port

from .common import fail

# The stand-in teacher's figures are modelled, not measured (tasks/ticket-triage/teacher.py).
STAND_IN = (
    "SIMULATED by the stand-in teacher: latency drawn around GPT-4o's published medians "
    "(0.39 s to first token, 81 tokens/s), cost at GPT-4o's list prices"
)


def start_stand_in(pack: Path, log: Path) -> tuple[subprocess.Popen[bytes], str]:
    port = free_port()
    with log.open("ab") as out:
        proc = subprocess.Popen(
            [sys.executable, str(pack / "teacher.py"), "--port", str(port)],
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise fail(f"the stand-in teacher exited; see {log}")
        try:
            with urllib.request.urlopen(f"{url}/health", timeout=1):  # noqa: S310 (loopback)
                return proc, f"{url}/v1"
        except OSError:
            time.sleep(0.3)
    proc.kill()
    raise fail(f"the stand-in teacher did not answer within 60 s; see {log}")


def measured_label(url: str, model: str) -> str:
    """The results table's teacher line for a real endpoint: its figures are measured."""
    return (
        f"MEASURED: {model} at {url}; cost at the task spec's teacher prices "
        "(GPT-4o's list prices in tasks/ticket-triage/spec.yaml)"
    )
