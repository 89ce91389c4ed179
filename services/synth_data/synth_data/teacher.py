"""The teacher for synth-data: shared.llm's client plus this service's response cache.

Every answer is first looked up in the response cache (keyed by the request's hash) and
stored there once paid for, so a redelivered or repeated job sends nothing twice. Residency
(the spec's list, DISTILLERY_ALLOWED_TEACHER_HOSTS and the deprecated
SYNTH_DATA_ALLOWED_TEACHER_HOSTS), no redirects, the per-endpoint concurrency gate, retries
with Retry-After and the ledger are shared.llm's; when the attempts run out the whole job is
retried later (RetriesExhausted is a TransientError).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Protocol, Self

from shared.bus import PermanentError
from shared.llm import (
    EndpointUnusable,
    Ledger,
    LLMClient,
    RequestRefused,
    ResidencyError,
    RetryPolicy,
    operator_list,
)
from shared.tasks.spec import TaskSpec
from shared.tasks.spec import Teacher as TeacherSpec

from .domain import SYNTH_SETTING, request_key, residency_violation
from .settings import SynthDataSettings

# The names this service's callers and tests know, for the shared errors and counters.
ResidencyViolation = ResidencyError
TeacherUnusable = EndpointUnusable  # includes RedirectRefused
TeacherRefused = RequestRefused  # that example is rejected, not the job
Traffic = Ledger

__all__ = [
    "Reply",
    "ResidencyViolation",
    "ResponseCache",
    "RetryPolicy",
    "TeacherClient",
    "TeacherRefused",
    "TeacherUnusable",
    "Traffic",
]


@dataclass(frozen=True)
class Reply:
    text: str
    prompt_tokens: int
    completion_tokens: int
    cached: bool = False


class ResponseCache(Protocol):
    async def get(self, key: str) -> Reply | None: ...

    async def put(self, key: str, reply: Reply, *, model: str, purpose: str) -> None: ...


class TeacherClient:
    def __init__(
        self,
        spec: TeacherSpec,
        cache: ResponseCache,
        *,
        allowed_hosts: Sequence[str],
        operator_hosts: Sequence[str],
        synth_hosts: Sequence[str] = (),
        retry: RetryPolicy | None = None,
    ) -> None:
        self.spec = spec
        self.cache = cache
        self._llm = LLMClient(
            spec,
            spec_hosts=allowed_hosts,
            operator_hosts=operator_hosts,
            extra_lists=(operator_list(tuple(synth_hosts), SYNTH_SETTING),),
            retry=retry,
            caller="synth-data",
        )

    @property
    def traffic(self) -> Ledger:
        return self._llm.ledger

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self._llm.close()

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
            self._llm.cache_hit()
            return cached
        answer = await self._llm.chat(messages, **params)
        reply = Reply(answer.text, answer.prompt_tokens, answer.completion_tokens)
        await self.cache.put(key, reply, model=self.spec.model, purpose=purpose)
        return reply


def refuse_outside_residency(
    spec: TaskSpec, settings: SynthDataSettings, operator_hosts: Sequence[str]
) -> None:
    """Every stage that asks the teacher checks its host against the lists first."""
    violation = residency_violation(
        spec.teacher,
        spec.residency.allowed_teacher_hosts,
        settings.allowed_teacher_hosts,
        operator_hosts,
    )
    if violation:
        raise PermanentError(violation)  # no request has left: a retry cannot change a list


def teacher_for(
    spec: TaskSpec,
    cache: ResponseCache,
    settings: SynthDataSettings,
    operator_hosts: Sequence[str],
) -> TeacherClient:
    """The spec's teacher with this service's retries, lists and `cache`."""
    return TeacherClient(
        spec.teacher,
        cache,
        allowed_hosts=spec.residency.allowed_teacher_hosts,
        operator_hosts=operator_hosts,
        synth_hosts=settings.allowed_teacher_hosts,
        retry=RetryPolicy(settings.max_attempts, settings.backoff_base_s, settings.backoff_cap_s),
    )
