"""`python -m shared.runtime.serve package.module:create_app` runs one service process."""

from __future__ import annotations

import asyncio
import ctypes
import importlib
import os
import signal
import sys

SUPERVISOR_PID = "DISTILLERY_SUPERVISOR_PID"
PR_SET_PDEATHSIG = 1  # linux/prctl.h


def die_with_supervisor() -> bool:
    """SIGTERM this process (a clean stop) when its supervisor dies, even by SIGKILL, which
    leaves the supervisor no chance to stop its children: they would run on, orphaned,
    against a bus that is gone. Linux only; True when armed."""
    parent = os.environ.get(SUPERVISOR_PID)
    if not parent or not sys.platform.startswith("linux"):
        return False
    ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGTERM)
    if os.getppid() != int(parent):  # it died before the line above
        os.kill(os.getpid(), signal.SIGTERM)
    return True


def load_factory(target: str):
    module_name, _, attr = target.partition(":")
    if not attr:
        raise SystemExit(f"expected module:function, got {target!r}")
    return getattr(importlib.import_module(module_name), attr)


def main(argv: list[str] | None = None) -> None:
    args = sys.argv[1:] if argv is None else argv
    if len(args) != 1:
        raise SystemExit("usage: python -m shared.runtime.serve module:create_app")
    die_with_supervisor()
    app = load_factory(args[0])()
    asyncio.run(app.run())


if __name__ == "__main__":
    main()
