"""A supervisor killed outright (SIGKILL: no chance to stop anything) takes its services with
it, so no orphan runs on against a bus that is gone. Real processes."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
PARENT = textwrap.dedent(
    """
    import os, sys, time
    from pathlib import Path
    from shared.runtime.registry import ServiceSpec
    from shared.runtime.supervisor import Supervisor

    spec = ServiceSpec("sleeper", "tests.fixtures.sleeper:create_app", "test")
    supervisor = Supervisor([spec], env=dict(os.environ), log_dir=Path(sys.argv[1]))
    supervisor.start()
    print(supervisor.children[0].proc.pid, flush=True)
    time.sleep(600)
    """
)


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # A zombie is dead, only not yet reaped (its parent is gone; init reaps it).
    stat = Path(f"/proc/{pid}/stat")
    return stat.exists() and stat.read_text().split()[2] != "Z"


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="PR_SET_PDEATHSIG is Linux's")
def test_a_killed_supervisor_takes_its_services_with_it(tmp_path):
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    parent = subprocess.Popen(
        [sys.executable, "-c", PARENT, str(tmp_path)], stdout=subprocess.PIPE, env=env, cwd=ROOT
    )
    child = int(parent.stdout.readline())
    try:
        time.sleep(1.0)  # the service is up (and has asked to die with its parent)
        assert alive(child)
        parent.send_signal(signal.SIGKILL)
        parent.wait(10)
        deadline = time.monotonic() + 10
        while alive(child) and time.monotonic() < deadline:
            time.sleep(0.1)
        assert not alive(child), "the service outlived its supervisor"
    finally:
        parent.kill()
        if alive(child):
            os.kill(child, signal.SIGKILL)
