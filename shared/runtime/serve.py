"""`python -m shared.runtime.serve package.module:create_app` runs one service process."""

from __future__ import annotations

import asyncio
import importlib
import sys


def load_factory(target: str):
    module_name, _, attr = target.partition(":")
    if not attr:
        raise SystemExit(f"expected module:function, got {target!r}")
    return getattr(importlib.import_module(module_name), attr)


def main(argv: list[str] | None = None) -> None:
    args = sys.argv[1:] if argv is None else argv
    if len(args) != 1:
        raise SystemExit("usage: python -m shared.runtime.serve module:create_app")
    app = load_factory(args[0])()
    asyncio.run(app.run())


if __name__ == "__main__":
    main()
