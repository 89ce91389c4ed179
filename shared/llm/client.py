"""One OpenAI-compatible chat client for every teacher call, on the official `openai` SDK.

Its guarantees, in the order a request meets them:
- residency: the base_url must pass the task spec's allow-list AND the operator's
  (DISTILLERY_ALLOWED_TEACHER_HOSTS, plus any per-service list a caller adds). A refused host
  is refused in the constructor, before the SDK or an HTTP client exists, so not one byte
  leaves; an httpx request hook checks every outgoing request again, so no later change to how
  URLs are built can route task data elsewhere;
- no redirects: the HTTP client never follows one, and a 3xx is a permanent RedirectRefused
  naming the Location host (following it would send the prompts to a host nobody allowed);
- one concurrency gate per endpoint and process (policy.gate_for);
- our retries, not the SDK's (max_retries=0), so each is counted and logged: 408/409/425/429,
  5xx, timeouts and dropped connections, honouring Retry-After, up to RetryPolicy.max_attempts;
- a Ledger of requests, retries, tokens and cost at the spec's prices, and process metrics.

The API key is read from the environment variable the spec names and never logged; local
servers accept any key, so an unset variable sends a placeholder.
"""

from __future__ import annotations

import asyncio
import os
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Self

import openai

from shared.logs import get_logger
from shared.tasks.spec import Teacher

from . import ledger as ledgers
from .errors import (
    EndpointUnusable,
    RedirectRefused,
    RequestRefused,
    ResidencyError,
    RetriesExhausted,
)
from .hosts import AllowList, operator_list, refusal, spec_list, target_of
from .policy import RetryPolicy, gate_for, retry_after_s

log = get_logger(__name__)

RETRY_STATUS = frozenset({408, 409, 425, 429})
UNUSABLE_STATUS = frozenset({401, 403, 404})
NO_KEY = "unused"


@dataclass(frozen=True)
class Completion:
    text: str
    prompt_tokens: int
    completion_tokens: int
    latency_ms: float  # the attempt that answered: no queueing behind the gate, no retries
    attempts: int


def check_residency(base_url: str, lists: Sequence[AllowList]) -> None:
    problem = refusal(base_url, lists)
    if problem:
        raise ResidencyError(problem)


class LLMClient:
    """Chat completions against one endpoint and model; use as `async with`."""

    def __init__(
        self,
        teacher: Teacher,
        *,
        spec_hosts: Sequence[str],
        operator_hosts: Sequence[str],
        extra_lists: Sequence[AllowList] = (),
        retry: RetryPolicy | None = None,
        caller: str = "teacher",
    ) -> None:
        self.lists = (spec_list(spec_hosts), operator_list(operator_hosts), *extra_lists)
        check_residency(teacher.base_url, self.lists)
        self.teacher = teacher
        self.retry = retry or RetryPolicy()
        self.caller = caller
        self.ledger = ledgers.Ledger()
        self._http = openai.DefaultAsyncHttpxClient(
            follow_redirects=False, event_hooks={"request": [self._guard]}
        )
        self._sdk = openai.AsyncOpenAI(
            base_url=teacher.base_url,
            api_key=os.environ.get(teacher.api_key_env) or NO_KEY,
            timeout=teacher.timeout_s,
            max_retries=0,
            http_client=self._http,
        )

    @property
    def host(self) -> str:
        return str(target_of(self.teacher.base_url))

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.close()

    async def close(self) -> None:
        await self._sdk.close()  # closes the HTTP client we passed in, too

    def cache_hit(self) -> None:
        """A caller's cache answered instead of the endpoint: counted, not paid."""
        self.ledger.cache_hits += 1
        ledgers.outcome(self.caller, "cached")

    async def chat(self, messages: Sequence[dict[str, str]], **params: Any) -> Completion:
        """One chat completion; `params` go to the API as they are (temperature, max_tokens…)."""
        gate = gate_for(self.teacher.base_url, self.teacher.model)
        # The slot is held through backoff too: while an endpoint says 429, this process
        # should not let other jobs press it harder.
        async with gate.slot(self.teacher.max_concurrency):
            return await self._with_retries(list(messages), params)

    async def _with_retries(self, messages: list[dict[str, str]], params: dict) -> Completion:
        for attempt in range(1, self.retry.max_attempts + 1):
            self.ledger.requests += 1
            began = time.perf_counter()
            try:
                response = await self._sdk.chat.completions.create(
                    model=self.teacher.model,
                    messages=messages,  # type: ignore[arg-type]
                    **params,
                )
            except openai.APIStatusError as exc:
                problem, retry_after = self._classify(exc)
            except (openai.APIConnectionError, openai.APIResponseValidationError) as exc:
                problem, retry_after = f"{type(exc).__name__}: {exc}", None
            else:
                latency_ms = (time.perf_counter() - began) * 1000
                ledgers.outcome(self.caller, "ok")
                return self._completion(response, latency_ms, attempt)
            if attempt == self.retry.max_attempts:
                ledgers.outcome(self.caller, "exhausted")
                raise RetriesExhausted(
                    f"teacher at {self.host} still failing after {attempt} attempts: {problem}"
                )
            delay = self.retry.delay(attempt, retry_after)
            self.ledger.retries += 1
            ledgers.outcome(self.caller, "retried")
            log.warning(
                "teacher request failed; retrying",
                caller=self.caller,
                host=self.host,
                problem=problem,
                attempt=attempt,
                delay_s=round(delay, 3),
            )
            await asyncio.sleep(delay)
        raise AssertionError("unreachable")  # the loop returns or raises

    def _classify(self, exc: openai.APIStatusError) -> tuple[str, float | None]:
        """Raise for what a retry cannot fix; otherwise the problem and any Retry-After."""
        status = exc.status_code
        problem = f"HTTP {status}: {_short(exc)}"
        where = f"teacher at {self.host} (model {self.teacher.model!r})"
        if 300 <= status < 400:
            ledgers.outcome(self.caller, "redirect")
            location = exc.response.headers.get("location")
            to = _location_host(exc, location)
            raise RedirectRefused(
                f"{where} answered HTTP {status} redirecting to host {to or location!r}; "
                "redirects are never followed (the request carries task data): point "
                "teacher.base_url at the final endpoint if that host is allowed",
                to,
            ) from None
        if status < 300 or status in UNUSABLE_STATUS:
            ledgers.outcome(self.caller, "unusable")
            raise EndpointUnusable(f"{where} answered {problem}") from None
        if status < 500 and status not in RETRY_STATUS:
            ledgers.outcome(self.caller, "refused")
            raise RequestRefused(f"{where} refused the request: {problem}") from None
        return problem, retry_after_s(exc.response.headers)

    def _completion(self, response: Any, latency_ms: float, attempts: int) -> Completion:
        choice = response.choices[0] if response.choices else None
        text = (choice.message.content or "") if choice is not None else ""
        usage = response.usage
        prompt = int(getattr(usage, "prompt_tokens", 0) or 0)
        completion = int(getattr(usage, "completion_tokens", 0) or 0)
        ledgers.paid(self.ledger, self.caller, self.teacher, prompt, completion)
        return Completion(text, prompt, completion, latency_ms, attempts)

    async def _guard(self, request: Any) -> None:
        """Every request, just before it is sent: the same residency check on its real URL."""
        problem = refusal(str(request.url), self.lists)
        if problem:
            ledgers.outcome(self.caller, "residency")
            raise ResidencyError(problem)


def _location_host(exc: openai.APIStatusError, location: str | None) -> str | None:
    if not location:
        return None
    try:
        # Relative Locations resolve against the request's URL, as a follower would.
        return str(target_of(exc.response.request.url.join(location)))
    except Exception:  # an unreadable Location is still refused, only unnamed
        return None


def _short(exc: openai.APIStatusError) -> str:
    body = exc.body
    if isinstance(body, dict):
        detail = body.get("message") or body.get("detail") or body.get("error") or body
        return str(detail)[:300]
    return str(exc.message)[:300]
