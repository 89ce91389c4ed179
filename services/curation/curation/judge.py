"""The optional LLM judge: the task's teacher grades each kept row from 1 to 5.

Off unless the spec sets `curation.judge: true`: it costs a teacher call per row and makes the
dataset depend on a model's answers (temperature 0 narrows that, it does not remove it). The
teacher endpoint is checked against the spec's residency allow-list before any row leaves,
and its key is read from the environment variable the spec names, never from the spec.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor

from shared.bus.errors import PermanentError
from shared.tasks.spec import TaskSpec

from .domain import Row

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
    def __init__(self, spec: TaskSpec, max_rows: int) -> None:
        if spec.teacher.host not in spec.residency.allowed_teacher_hosts:
            raise PermanentError(
                f"judge: teacher host {spec.teacher.host!r} is outside the residency allow-list"
            )
        self.spec = spec
        self.max_rows = max_rows

    def _client(self):
        from openai import OpenAI

        teacher = self.spec.teacher
        return OpenAI(
            base_url=teacher.base_url,
            # Local OpenAI-compatible servers accept any key; hosted ones need the real one.
            api_key=os.environ.get(teacher.api_key_env) or "unused",
            timeout=teacher.timeout_s,
            max_retries=2,
        )

    def __call__(self, rows: Sequence[Row]) -> list[float | None]:
        if len(rows) > self.max_rows:
            raise PermanentError(
                f"judge: {len(rows)} rows exceed CURATION_JUDGE_MAX_ROWS={self.max_rows}"
            )
        client = self._client()
        try:
            with ThreadPoolExecutor(self.spec.teacher.max_concurrency) as pool:
                return list(pool.map(lambda row: self._grade(client, row), rows))
        finally:
            client.close()

    def _grade(self, client, row: Row) -> float | None:
        prompt = (
            f"Task instructions:\n{self.spec.instructions}\n\n"
            f"Input:\n{row.input}\n\nProposed output:\n{row.output}"
        )
        reply = client.chat.completions.create(
            model=self.spec.teacher.model,
            messages=[{"role": "system", "content": SYSTEM}, {"role": "user", "content": prompt}],
            temperature=0.0,
            max_tokens=20,
        )
        return parse_score(reply.choices[0].message.content or "")
