"""The optional LLM judge: the task's teacher grades each kept row from 1 to 5.

Off unless the spec sets `curation.judge: true`: it costs a teacher call per row and makes the
dataset depend on a model's answers (temperature 0 narrows that, it does not remove it). Calls
go through shared.llm: the endpoint must pass the spec's residency allow-list AND the
operator's (DISTILLERY_ALLOWED_TEACHER_HOSTS), checked when the judge is built, before any row
leaves; redirects are refused; retries, the per-endpoint concurrency gate and the ledger are
the shared client's. The key is read from the environment variable the spec names.
"""

from __future__ import annotations

import asyncio
import json
import re
from collections.abc import Sequence

from shared.bus.errors import PermanentError
from shared.llm import LLMClient, RequestRefused, RetryPolicy, check_residency
from shared.llm.hosts import operator_list, spec_list
from shared.logs import get_logger
from shared.tasks.spec import TaskSpec

from .domain import Row

log = get_logger(__name__)
SYSTEM = (
    "You grade training examples for a narrow task. Given the task instructions, an input and "
    "a proposed output, rate how correct, complete and well-formed the output is, from 1 "
    '(wrong or unusable) to 5 (exactly right). Reply with JSON only: {"score": <1-5>}.'
)
_SCORE = re.compile(r'"score"\s*:\s*([1-5](?:\.\d+)?)|^\s*([1-5])\b')


def parse_score(text: str) -> float | None:
    """0..1 from a 1..5 grade; None when the answer holds no grade (the row is not judged)."""
    try:
        value = json.loads(text)
        grade = float(value["score"]) if isinstance(value, dict) else float(value)
    except (ValueError, KeyError, TypeError):
        match = _SCORE.search(text)
        if not match:
            return None
        grade = float(match.group(1) or match.group(2))
    if not 1 <= grade <= 5:
        return None
    return (grade - 1) / 4


class TeacherJudge:
    """Called synchronously from the pipeline's worker thread; the requests run on the event
    loop the judge was built on, so they share that loop's per-endpoint gate with every other
    teacher call in this process, and heartbeats keep going while the thread waits."""

    def __init__(
        self,
        spec: TaskSpec,
        max_rows: int,
        *,
        operator_hosts: Sequence[str],
        retry: RetryPolicy | None = None,
    ) -> None:
        self.lists = (
            spec_list(spec.residency.allowed_teacher_hosts),
            operator_list(operator_hosts),
        )
        check_residency(spec.teacher.base_url, self.lists)
        self.spec = spec
        self.max_rows = max_rows
        self.operator_hosts = tuple(operator_hosts)
        self.retry = retry
        try:
            self._loop: asyncio.AbstractEventLoop | None = asyncio.get_running_loop()
        except RuntimeError:
            self._loop = None  # built outside any loop: each call runs its own

    def __call__(self, rows: Sequence[Row]) -> list[float | None]:
        if len(rows) > self.max_rows:
            raise PermanentError(
                f"judge: {len(rows)} rows exceed CURATION_JUDGE_MAX_ROWS={self.max_rows}"
            )
        if self._loop is None:
            return asyncio.run(self.grade(rows))
        try:
            running = asyncio.get_running_loop()
        except RuntimeError:
            running = None
        if running is self._loop:
            raise RuntimeError("TeacherJudge blocks until graded: call it from a worker thread")
        return asyncio.run_coroutine_threadsafe(self.grade(rows), self._loop).result()

    async def grade(self, rows: Sequence[Row]) -> list[float | None]:
        async with LLMClient(
            self.spec.teacher,
            spec_hosts=self.spec.residency.allowed_teacher_hosts,
            operator_hosts=self.operator_hosts,
            retry=self.retry,
            caller="curation-judge",
        ) as llm:
            scores = list(await asyncio.gather(*(self._grade(llm, row) for row in rows)))
            log.info("judge done", rows=len(rows), **llm.ledger.as_log())
        return scores

    async def _grade(self, llm: LLMClient, row: Row) -> float | None:
        prompt = (
            f"Task instructions:\n{self.spec.instructions}\n\n"
            f"Input:\n{row.input}\n\nProposed output:\n{row.output}"
        )
        messages = [{"role": "system", "content": SYSTEM}, {"role": "user", "content": prompt}]
        try:
            reply = await llm.chat(messages, temperature=0.0, max_tokens=20)
        except RequestRefused as exc:
            # One row the endpoint will not grade (too long, filtered) is not held against it,
            # like an answer with no grade; auth, redirects and outages still stop the run.
            log.warning("judge request refused; row not graded", row=row.id, problem=str(exc))
            return None
        return parse_score(reply.text)
