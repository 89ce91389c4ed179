"""structlog set-up: JSON off a TTY, readable on one, secrets never rendered."""

from __future__ import annotations

import logging
import sys
from typing import Any

import structlog
from pydantic import SecretStr

REDACTED = "***"
_SECRET_HINTS = ("password", "secret", "token", "api_key", "apikey", "authorization")


def _redact(_: Any, __: str, event: dict[str, Any]) -> dict[str, Any]:
    for key, value in list(event.items()):
        if isinstance(value, SecretStr) or any(h in key.lower() for h in _SECRET_HINTS):
            event[key] = REDACTED
    return event


class _CurrentStderr:
    """Whatever sys.stderr is when a line is written, not when logging was configured:
    code also runs in process under tests and the CLI, where the stream is swapped and closed."""

    def write(self, text: str) -> int:
        return sys.stderr.write(text)

    def flush(self) -> None:
        sys.stderr.flush()


def configure_logging(level: str = "INFO", json: bool | None = None) -> None:
    """Idempotent; call once per process from its entrypoint."""
    as_json = (not sys.stderr.isatty()) if json is None else json
    renderer: Any = (
        structlog.processors.JSONRenderer() if as_json else structlog.dev.ConsoleRenderer()
    )
    structlog.configure(
        processors=[
            structlog.contextvars.merge_contextvars,
            structlog.processors.add_log_level,
            structlog.processors.TimeStamper(fmt="iso", utc=True),
            _redact,
            structlog.processors.format_exc_info,
            renderer,
        ],
        wrapper_class=structlog.make_filtering_bound_logger(logging.getLevelName(level.upper())),
        logger_factory=structlog.PrintLoggerFactory(file=_CurrentStderr()),
        cache_logger_on_first_use=False,
    )


def get_logger(name: str) -> structlog.typing.FilteringBoundLogger:
    return structlog.get_logger(name)
