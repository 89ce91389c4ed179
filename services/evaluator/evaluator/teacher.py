"""The teacher through its OpenAI-compatible API, every answer cached by request hash.

A cached answer is reused whatever evaluation asks again, so re-evaluating after a crash, or a
new candidate on the same golden set, costs no teacher tokens. Evaluation asks at temperature 0:
the teacher is measured at its best, not sampled as synth-data samples it.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import os
import time
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from sqlalchemy.dialects import postgresql, sqlite

from shared.bus import PermanentError, TransientError
from shared.db import Database
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


def check_residency(spec: TaskSpec) -> None:
    """The data-residency switch: never send task data to a host outside the allow-list."""
    if spec.teacher.host not in spec.residency.allowed_teacher_hosts:
        raise PermanentError(
            f"teacher host {spec.teacher.host!r} is outside residency.allowed_teacher_hosts"
        )


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
    def __init__(self, teacher: Teacher, db: Database, *, max_tokens: int) -> None:
        from openai import AsyncOpenAI

        self.teacher = teacher
        self.db = db
        self.max_tokens = max_tokens
        self._limit = asyncio.Semaphore(teacher.max_concurrency)
        # Local servers take any key; a real endpoint's key comes only from the environment.
        self._client = AsyncOpenAI(
            base_url=teacher.base_url,
            api_key=os.environ.get(teacher.api_key_env) or "unused",
            timeout=teacher.timeout_s,
            max_retries=2,
        )

    async def close(self) -> None:
        await self._client.close()

    async def complete(self, messages: list[dict[str, str]]) -> Answer:
        key = request_key(self.teacher, messages, self.max_tokens)
        async with self.db.uow() as uow:
            row = await uow.session.get(TeacherCacheRow, key)
            if row is not None:
                return Answer(
                    row.content, row.prompt_tokens, row.completion_tokens, row.latency_ms, True
                )
        async with self._limit:
            answer = await self._ask(messages)
        await self._remember(key, answer)
        return answer

    async def _ask(self, messages: list[dict[str, str]]) -> Answer:
        import openai

        began = time.perf_counter()
        try:
            reply = await self._client.chat.completions.create(
                model=self.teacher.model,
                messages=messages,  # type: ignore[arg-type]
                temperature=0.0,
                max_tokens=self.max_tokens,
            )
        except (openai.APIConnectionError, openai.RateLimitError) as exc:
            raise TransientError(f"teacher unavailable: {type(exc).__name__}") from exc
        except openai.APIStatusError as exc:
            if exc.status_code >= 500:
                raise TransientError(f"teacher answered {exc.status_code}") from exc
            raise PermanentError(f"teacher refused the request: {exc.status_code}") from exc
        latency_ms = (time.perf_counter() - began) * 1000
        usage = reply.usage
        return Answer(
            reply.choices[0].message.content or "",
            usage.prompt_tokens if usage else 0,
            usage.completion_tokens if usage else 0,
            latency_ms,
            False,
        )

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
                log.info("teacher progress", done=done, total=len(rows))
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
