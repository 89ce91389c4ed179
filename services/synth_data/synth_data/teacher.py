"""The teacher: any OpenAI-compatible endpoint, through the official `openai` SDK.

Every answer is first looked up in the response cache (keyed by the request's hash) and
stored there once paid for, so a redelivered or repeated job sends nothing twice. Requests are
bounded by the spec's max_concurrency and retried with exponential backoff on 429, 5xx,
timeouts and dropped connections; when the attempts run out the whole job is retried later
(TransientError). The API key comes from the environment variable the spec names and is never
logged; redirects are not followed, so a 30x cannot lead a request past the residency check.
"""

from __future__ import annotations

import asyncio
import os
import random
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Protocol, Self

import openai
from prometheus_client import Counter

from shared.bus.errors import TransientError
from shared.logs import get_logger
from shared.tasks.spec import Teacher as TeacherSpec

from .domain import request_key, residency_violation

log = get_logger(__name__)

REQUESTS = Counter(
    "distillery_synth_teacher_requests_total", "Teacher requests by outcome", ["outcome"]
)
TOKENS = Counter("distillery_synth_teacher_tokens_total", "Teacher tokens paid for", ["kind"])

_RETRY_STATUS = {408, 409, 425, 429}
_UNUSABLE_STATUS = {401, 403, 404}
NO_KEY = "unused"  # local servers ignore the key, but the SDK insists on one


class ResidencyViolation(Exception):
    """The teacher's host is outside an allow-list; nothing was sent."""


class TeacherUnusable(Exception):
    """The endpoint refuses us as a whole (bad key, no such model): the cycle cannot go on."""


class TeacherRefused(Exception):
    """The endpoint refused this one request (4xx): that example is rejected, not the job."""


@dataclass(frozen=True)
class Reply:
    text: str
    prompt_tokens: int
    completion_tokens: int
    cached: bool = False


class ResponseCache(Protocol):
    async def get(self, key: str) -> Reply | None: ...

    async def put(self, key: str, reply: Reply, *, model: str, purpose: str) -> None: ...


@dataclass
class Traffic:
    """What this delivery did; the ledger of what was paid is in the cache rows."""

    requests: int = 0
    cache_hits: int = 0
    retries: int = 0
    prompt_tokens: int = 0
    completion_tokens: int = 0


@dataclass(frozen=True)
class RetryPolicy:
    max_attempts: int = 5
    base_s: float = 1.0
    cap_s: float = 30.0

    def delay(self, attempt: int, retry_after: float | None) -> float:
        if retry_after is not None:
            return min(self.cap_s, max(0.0, retry_after))
        backoff = min(self.cap_s, self.base_s * 2 ** (attempt - 1))
        return backoff * (0.5 + random.random() / 2)  # noqa: S311 - jitter, not a secret


class TeacherClient:
    def __init__(
        self,
        spec: TeacherSpec,
        cache: ResponseCache,
        *,
        allowed_hosts: Sequence[str],
        platform_hosts: Sequence[str] = (),
        retry: RetryPolicy | None = None,
        slots: asyncio.Semaphore | None = None,
    ) -> None:
        # Checked here too, not only by the caller: no code path may build a client for a
        # host outside the allow-lists.
        violation = residency_violation(spec, allowed_hosts, platform_hosts)
        if violation:
            raise ResidencyViolation(violation)
        self.spec = spec
        self.cache = cache
        self.retry = retry or RetryPolicy()
        self.traffic = Traffic()
        # Shared by every job that calls this endpoint, so concurrent cycles add up to the
        # endpoint's max_concurrency, not a multiple of it.
        self._slots = slots or asyncio.Semaphore(spec.max_concurrency)
        self._client = openai.AsyncOpenAI(
            base_url=spec.base_url,
            api_key=os.environ.get(spec.api_key_env) or NO_KEY,
            timeout=spec.timeout_s,
            max_retries=0,  # ours: counted, logged, and bounded by the job's own policy
            http_client=openai.DefaultAsyncHttpxClient(follow_redirects=False),
        )

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self._client.close()

    async def complete(
        self,
        messages: list[dict[str, str]],
        *,
        purpose: str,
        params: dict[str, Any],
        sample: str | int,
    ) -> Reply:
        key = request_key(self.spec.model, messages, params, sample)
        cached = await self.cache.get(key)
        if cached is not None:
            self.traffic.cache_hits += 1
            REQUESTS.labels("cached").inc()
            return cached
        async with self._slots:
            reply = await self._request(messages, params)
        await self.cache.put(key, reply, model=self.spec.model, purpose=purpose)
        self.traffic.prompt_tokens += reply.prompt_tokens
        self.traffic.completion_tokens += reply.completion_tokens
        TOKENS.labels("prompt").inc(reply.prompt_tokens)
        TOKENS.labels("completion").inc(reply.completion_tokens)
        return reply

    async def _request(self, messages: list[dict[str, str]], params: dict[str, Any]) -> Reply:
        for attempt in range(1, self.retry.max_attempts + 1):
            self.traffic.requests += 1
            try:
                response = await self._client.chat.completions.create(
                    model=self.spec.model, messages=messages, **params
                )
            except openai.APIStatusError as exc:
                problem, retry_after = self._classify(exc)
            except (openai.APIConnectionError, openai.APIResponseValidationError) as exc:
                problem, retry_after = f"{type(exc).__name__}: {exc}", None
            else:
                REQUESTS.labels("ok").inc()
                return _reply(response)
            if attempt == self.retry.max_attempts:
                REQUESTS.labels("exhausted").inc()
                raise TransientError(
                    f"teacher at {self.spec.host} still failing after {attempt} attempts: {problem}"
                )
            delay = self.retry.delay(attempt, retry_after)
            self.traffic.retries += 1
            REQUESTS.labels("retried").inc()
            log.warning("teacher request failed; retrying", problem=problem, delay_s=delay)
            await asyncio.sleep(delay)
        raise AssertionError("unreachable")  # the loop returns or raises

    def _classify(self, exc: openai.APIStatusError) -> tuple[str, float | None]:
        status = exc.status_code
        problem = f"HTTP {status}: {_short(exc)}"
        if status < 400:
            problem += " (a redirect; not followed, so no request leaves the allow-list)"
        if status < 400 or status in _UNUSABLE_STATUS:
            REQUESTS.labels("unusable").inc()
            raise TeacherUnusable(
                f"teacher at {self.spec.host} (model {self.spec.model!r}) answered {problem}"
            ) from None
        if status < 500 and status not in _RETRY_STATUS:
            REQUESTS.labels("refused").inc()
            raise TeacherRefused(problem) from None
        return problem, _retry_after(exc)


def _reply(response: Any) -> Reply:
    choice = response.choices[0] if response.choices else None
    text = (choice.message.content or "") if choice is not None else ""
    usage = response.usage
    return Reply(
        text=text,
        prompt_tokens=int(getattr(usage, "prompt_tokens", 0) or 0),
        completion_tokens=int(getattr(usage, "completion_tokens", 0) or 0),
    )


def _retry_after(exc: openai.APIStatusError) -> float | None:
    value = exc.response.headers.get("retry-after") if exc.response is not None else None
    try:
        return float(value) if value is not None else None
    except ValueError:
        return None  # an HTTP date: fall back to our own backoff


def _short(exc: openai.APIStatusError) -> str:
    body = exc.body
    if isinstance(body, dict):
        detail = body.get("message") or body.get("detail") or body.get("error") or body
        return str(detail)[:300]
    return str(exc.message)[:300]
