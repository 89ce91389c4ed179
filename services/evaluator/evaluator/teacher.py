"""The teacher through shared.llm, every answer cached by request hash.

A cached answer is reused whatever evaluation asks again, so re-evaluating after a crash, or a
new candidate on the same golden set, costs no teacher tokens. Evaluation asks at temperature 0:
the teacher is measured at its best, not sampled as synth-data samples it.

The shared client refuses a host outside the spec's residency list or the operator's
(DISTILLERY_ALLOWED_TEACHER_HOSTS) before it is built, never follows a redirect (a 3xx is a
permanent error naming its Location host), shares one concurrency gate per endpoint with the
rest of this process, and retries 429/5xx/timeouts honouring Retry-After; once its attempts run
out the delivery is retried later (TransientError) and the answers cached so far are kept.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Self

from sqlalchemy.dialects import postgresql, sqlite

from shared.db import Database
from shared.llm import Ledger, LLMClient, RetryPolicy
from shared.llm import check_residency as check_hosts
from shared.llm.hosts import operator_list, spec_list
from shared.logs import get_logger
from shared.tasks.spec import TaskSpec, Teacher

from .data import GoldenRow
from .models import TeacherCacheRow

log = get_logger(__name__)
JUDGE_SYSTEM = (
    "You grade answers for a task. Compare the candidate answer with the reference answer. "
    "Reply with exactly one word: PASS if the candidate is correct, FAIL otherwise."
)


@dataclass(frozen=True)
class Answer:
    content: str
    prompt_tokens: int
    completion_tokens: int
    latency_ms: float
    cached: bool


def check_residency(spec: TaskSpec, operator_hosts: Sequence[str]) -> None:
    """The data-residency switch: never send task data to a host outside either allow-list.

    Raises shared.llm.ResidencyError (a PermanentError), naming the host and both lists."""
    lists = (spec_list(spec.residency.allowed_teacher_hosts), operator_list(operator_hosts))
    check_hosts(spec.teacher.base_url, lists)


def teacher_key(teacher: Teacher) -> str:
    """The teacher's identity for the results cache: endpoint and model name."""
    body = json.dumps({"base_url": teacher.base_url.rstrip("/"), "model": teacher.model})
    return hashlib.sha256(body.encode()).hexdigest()


def request_key(teacher: Teacher, messages: list[dict[str, str]], max_tokens: int) -> str:
    body = {
        "base_url": teacher.base_url.rstrip("/"),
        "model": teacher.model,
        "messages": messages,
        "temperature": 0.0,
        "max_tokens": max_tokens,
    }
    return hashlib.sha256(json.dumps(body, sort_keys=True).encode()).hexdigest()


class TeacherClient:
    def __init__(
        self,
        teacher: Teacher,
        db: Database,
        *,
        max_tokens: int,
        spec_hosts: Sequence[str],
        operator_hosts: Sequence[str],
        retry: RetryPolicy | None = None,
    ) -> None:
        self.teacher = teacher
        self.db = db
        self.max_tokens = max_tokens
        self._llm = LLMClient(
            teacher,
            spec_hosts=spec_hosts,
            operator_hosts=operator_hosts,
            retry=retry,
            caller="evaluator",
        )

    @property
    def ledger(self) -> Ledger:
        return self._llm.ledger

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.close()

    async def close(self) -> None:
        await self._llm.close()

    async def complete(self, messages: list[dict[str, str]]) -> Answer:
        key = request_key(self.teacher, messages, self.max_tokens)
        async with self.db.uow() as uow:
            row = await uow.session.get(TeacherCacheRow, key)
            if row is not None:
                self._llm.cache_hit()
                return Answer(
                    row.content, row.prompt_tokens, row.completion_tokens, row.latency_ms, True
                )
        reply = await self._llm.chat(messages, temperature=0.0, max_tokens=self.max_tokens)
        answer = Answer(
            reply.text, reply.prompt_tokens, reply.completion_tokens, reply.latency_ms, False
        )
        await self._remember(key, answer)
        return answer

    async def _remember(self, key: str, answer: Answer) -> None:
        insert = postgresql.insert if self.db.dialect == "postgresql" else sqlite.insert
        stmt = insert(TeacherCacheRow).values(
            request_sha256=key,
            model=self.teacher.model[:200],
            content=answer.content,
            prompt_tokens=answer.prompt_tokens,
            completion_tokens=answer.completion_tokens,
            latency_ms=answer.latency_ms,
            created_at=datetime.now(UTC),
        )
        async with self.db.uow() as uow:
            await uow.session.execute(stmt.on_conflict_do_nothing())
            await uow.commit()

    async def answer_golden(self, instructions: str, rows: Sequence[GoldenRow]) -> list[Answer]:
        done = 0

        async def one(row: GoldenRow) -> Answer:
            nonlocal done
            answer = await self.complete(
                [
                    {"role": "system", "content": instructions},
                    {"role": "user", "content": row.input},
                ]
            )
            done += 1
            if done % max(1, len(rows) // 10) == 0 or done == len(rows):
                log.info("teacher progress", done=done, total=len(rows), **self.ledger.as_log())
            return answer

        return list(await asyncio.gather(*(one(r) for r in rows)))

    async def judge(
        self, instructions: str, rows: Sequence[GoldenRow], replies: dict[str, str]
    ) -> list[bool]:
        """LLM-as-judge: the teacher's PASS/FAIL on each candidate reply."""

        async def one(row: GoldenRow) -> bool:
            prompt = (
                f"Task instructions:\n{instructions}\n\nInput:\n{row.input}\n\n"
                f"Reference answer:\n{row.output}\n\nCandidate answer:\n{replies.get(row.id, '')}"
            )
            answer = await self.complete(
                [{"role": "system", "content": JUDGE_SYSTEM}, {"role": "user", "content": prompt}]
            )
            return answer.content.strip().upper().startswith("PASS")

        return list(await asyncio.gather(*(one(r) for r in rows)))


def teacher_result(rows: Sequence[GoldenRow], answers: Sequence[Answer]) -> dict[str, Any]:
    """The teacher's answers in the same shape the worker gives a local model's."""
    return {
        "replies": {r.id: a.content for r, a in zip(rows, answers, strict=True)},
        "latency_ms_single": [a.latency_ms for a in answers],
        "prompt_tokens": [a.prompt_tokens for a in answers],
        "completion_tokens": [a.completion_tokens for a in answers],
    }
