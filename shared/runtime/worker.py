"""Heavy work (training, evaluation, quantization) in a child process, never on the event loop.

The parent runs `python -m shared.runtime.worker module:function`, sends one JSON document on
stdin and reads JSON lines back: `{"progress": {...}}` any number of times, then exactly one of
`{"result": {...}}` or `{"error": {"kind": "permanent"|"transient", "message": ...}}`. While it
waits it heartbeats the JetStream message, so a long job is not redelivered under it.

The function runs as `fn(payload, progress: Callable[[dict], None]) -> result`. When its
`payload` parameter is annotated with a pydantic model, the JSON document is validated into it,
and a pydantic result is dumped back as JSON: the contract is typed on both sides. Raising
`shared.bus.PermanentError` makes the failure permanent; anything else, a crash or a SIGKILL
included, is transient: the message is redelivered and the job resumes from its checkpoint.
A child whose parent dies exits too, so a killed service leaves no orphan training on.
"""

from __future__ import annotations

import asyncio
import contextlib
import importlib
import inspect
import json
import os
import sys
import threading
import time
import typing
from collections.abc import Awaitable, Callable
from contextlib import AbstractAsyncContextManager, nullcontext
from pathlib import Path
from typing import Any

from pydantic import BaseModel

from shared.bus.errors import PermanentError, TransientError
from shared.logs import get_logger

log = get_logger(__name__)

Progress = Callable[[dict[str, Any]], Awaitable[None]]
_LINE_LIMIT = 16 * 1024 * 1024


async def run_in_worker(
    target: str,
    payload: dict[str, Any],
    *,
    heartbeat: AbstractAsyncContextManager[None] | None = None,
    on_progress: Progress | None = None,
    log_path: Path | None = None,
    env: dict[str, str] | None = None,
) -> dict[str, Any]:
    """Run `target` ("module:function") in a fresh interpreter and return its result dict."""
    stderr = log_path.open("ab") if log_path else None
    try:
        proc = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "shared.runtime.worker",
            target,
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,
            stderr=stderr,
            env={**os.environ, **(env or {})},
            limit=_LINE_LIMIT,
        )
        async with heartbeat or nullcontext():
            try:
                return await _converse(proc, target, payload, on_progress)
            finally:
                if proc.returncode is None:
                    # Cancelled (service shutting down): the job resumes on redelivery.
                    proc.kill()
                    await proc.wait()
    finally:
        if stderr:
            stderr.close()


async def _converse(
    proc: asyncio.subprocess.Process,
    target: str,
    payload: dict[str, Any],
    on_progress: Progress | None,
) -> dict[str, Any]:
    assert proc.stdin and proc.stdout
    proc.stdin.write(json.dumps(payload).encode() + b"\n")
    await proc.stdin.drain()
    proc.stdin.close()
    outcome: dict[str, Any] | None = None
    while line := await proc.stdout.readline():
        try:
            message = json.loads(line)
        except json.JSONDecodeError:
            continue  # a library printed to stdout; only our JSON lines matter
        if not isinstance(message, dict):
            continue
        if "progress" in message and on_progress is not None:
            await on_progress(message["progress"])
        elif "result" in message or "error" in message:
            outcome = message
    code = await proc.wait()
    if outcome is None:
        raise TransientError(f"worker {target} exited with status {code} before answering")
    if "error" in outcome:
        error = outcome["error"]
        cls = PermanentError if error.get("kind") == "permanent" else TransientError
        raise cls(f"worker {target}: {error.get('message')}")
    return outcome["result"]


def _watch_parent(parent: int) -> None:
    # Linux has PR_SET_PDEATHSIG, but polling is portable and a second of lag is harmless.
    while True:
        if os.getppid() != parent:
            os._exit(70)
        time.sleep(1.0)


def _payload_model(fn: Callable[..., Any]) -> type[BaseModel] | None:
    hints = typing.get_type_hints(fn)
    params = [p for p in inspect.signature(fn).parameters if p != "return"]
    hint = hints.get(params[0]) if params else None
    return hint if isinstance(hint, type) and issubclass(hint, BaseModel) else None


def _main(target: str) -> int:
    out = os.fdopen(os.dup(1), "w", buffering=1)
    # Libraries print progress bars to stdout; keep our channel clean by pointing fd 1 at 2.
    os.dup2(2, 1)
    threading.Thread(target=_watch_parent, args=(os.getppid(),), daemon=True).start()
    lock = threading.Lock()

    def send(message: dict[str, Any]) -> None:
        with lock:
            out.write(json.dumps(message, default=str) + "\n")

    module_name, _, attr = target.partition(":")
    try:
        payload = json.loads(sys.stdin.readline())
        fn = getattr(importlib.import_module(module_name), attr)
        model = _payload_model(fn)
        if model is not None:
            try:
                payload = model.model_validate(payload)
            except ValueError as exc:  # the parent sent what this worker cannot read
                raise PermanentError(f"payload for {target}: {exc}") from exc
        result = fn(payload, lambda update: send({"progress": update}))
        if isinstance(result, BaseModel):
            result = result.model_dump(mode="json")
        send({"result": result})
        return 0
    except PermanentError as exc:
        send({"error": {"kind": "permanent", "message": str(exc)}})
        return 1
    except Exception as exc:
        send({"error": {"kind": "transient", "message": f"{type(exc).__name__}: {exc}"}})
        raise
    finally:
        with contextlib.suppress(Exception):
            out.flush()


if __name__ == "__main__":
    sys.exit(_main(sys.argv[1]))
