"""What an LLM call can end in, sorted by the bus's error policy.

Permanent ones end the stage's cycle (a retry cannot change a residency rule, a bad key or a
redirect); RetriesExhausted is transient, so the whole message is retried later and whatever a
caller cached is not paid for twice.
"""

from __future__ import annotations

from shared.bus.errors import PermanentError, TransientError


class ResidencyError(PermanentError):
    """The endpoint's host is outside an allow-list; nothing was sent, no client was built."""


class EndpointUnusable(PermanentError):
    """The endpoint refuses us as a whole (bad key, no such model, a redirect)."""


class RedirectRefused(EndpointUnusable):
    """The endpoint answered 3xx. Redirects are never followed: the request body is task data,
    and a redirect is a way past the allow-list that nobody reviewed."""

    def __init__(self, message: str, location_host: str | None) -> None:
        super().__init__(message)
        self.location_host = location_host


class RequestRefused(PermanentError):
    """The endpoint refused this one request (a 4xx other than auth/not-found/rate limits)."""


class RetriesExhausted(TransientError):
    """429, 5xx, timeouts or dropped connections on every attempt this policy allows."""
