"""Turning a plan into a batch: teacher calls, repairs, votes, rejections with reasons.

Per chunk of the plan, every input is written first, duplicates are dropped (first in plan
order wins), then every input is answered. Outcomes are kept in plan order, so with the
response cache a rerun yields the same rows, byte for byte.
"""

from __future__ import annotations

import asyncio
from collections import Counter
from collections.abc import Awaitable, Callable, Coroutine, Iterable
from dataclasses import dataclass, field
from typing import Any, TypeVar

from shared.tasks.spec import TaskSpec

from . import prompts
from .domain import Planned, aim_label, batch_row, declines, example_id, majority, reason_kind
from .prompts import Checked, check_output, clean_input
from .settings import SynthDataSettings
from .teacher import Reply, TeacherClient, TeacherRefused

T = TypeVar("T")
Progress = Callable[["Tally"], Awaitable[None]]


@dataclass
class Outcome:
    planned: Planned
    text: str | None = None
    output: str | None = None
    last_answer: str | None = None
    reason: str | None = None
    prompt_tokens: int = 0
    completion_tokens: int = 0

    def paid(self, reply: Reply) -> None:
        self.prompt_tokens += reply.prompt_tokens
        self.completion_tokens += reply.completion_tokens


@dataclass
class Tally:
    total: int
    done: int = 0
    accepted: int = 0
    rejected: int = 0


@dataclass
class Batch:
    rows: list[dict[str, Any]] = field(default_factory=list)
    rejected: list[dict[str, Any]] = field(default_factory=list)
    reasons: dict[str, int] = field(default_factory=dict)


class Synthesiser:
    def __init__(
        self,
        spec: TaskSpec,
        teacher: TeacherClient,
        settings: SynthDataSettings,
        *,
        scope: str,
        iteration: int,
        progress: Progress | None = None,
    ) -> None:
        self.spec = spec
        self.teacher = teacher
        self.settings = settings
        # Part of every input request's cache key: another cycle or iteration asks afresh.
        self.scope = scope
        self.iteration = iteration
        self.progress = progress

    async def run(self, plan: list[Planned]) -> Batch:
        tally = Tally(total=len(plan))
        seen: set[str] = set()
        outcomes: list[Outcome] = []
        for start in range(0, len(plan), self.settings.chunk_size):
            chunk = [Outcome(p) for p in plan[start : start + self.settings.chunk_size]]
            await gather_all(self._write(o) for o in chunk)
            for outcome in chunk:
                if outcome.reason is None and outcome.text in seen:
                    outcome.reason = "duplicate input: an earlier example has the same text"
                if outcome.reason is None:
                    seen.add(outcome.text or "")
                else:
                    await self._finished(outcome, tally)
            await gather_all(self._answer(o, tally) for o in chunk if o.reason is None)
            outcomes += chunk
        return self._batch(outcomes)

    async def answer(self, planned: Planned, text: str) -> Outcome:
        """Only the production call (with repairs and votes) for a given input."""
        outcome = Outcome(planned, text=text)
        await self._answer(outcome, Tally(total=1))
        return outcome

    async def _write(self, outcome: Outcome) -> None:
        planned = outcome.planned
        try:
            reply = await self.teacher.complete(
                prompts.input_messages(self.spec, planned),
                purpose="input",
                params=prompts.params(
                    self.spec.teacher.temperature, self.settings.input_max_tokens
                ),
                sample=f"{self.scope}/{planned.index}",
            )
        except TeacherRefused as exc:
            outcome.reason = f"teacher refused: asked for an input, {exc}"
            return
        outcome.paid(reply)
        outcome.text = clean_input(reply.text)
        if not outcome.text:
            outcome.reason = "empty input: the teacher wrote no input text"

    async def _answer(self, outcome: Outcome, tally: Tally) -> None:
        k = self.spec.synthesis.self_consistency
        # One sample: the teacher's most likely answer. Several: they must be able to differ.
        temperature = 0.0 if k == 1 else self.spec.teacher.temperature
        samples = await gather_all(self._sample(outcome, s, temperature) for s in range(k))
        if k == 1:
            winner = 0 if samples[0].error is None else None
            if winner is None:
                outcome.reason = samples[0].error
        else:
            winner = majority([c.vote for c in samples])
            if winner is None:
                outcome.reason = _disagreement(samples)
        if winner is not None:
            output = samples[winner].output or ""
            expected = self.spec.negatives.expected
            if outcome.planned.negative and not declines(output, expected):
                outcome.reason = (
                    f"negative not declined: the answer {output[:120]!r} does not match "
                    f"negatives.expected {expected}"
                )
            else:
                outcome.output = output
        await self._finished(outcome, tally)

    async def _sample(self, outcome: Outcome, sample: int, temperature: float) -> Checked:
        messages = prompts.answer_messages(self.spec, outcome.text or "")
        params = prompts.params(temperature, self.settings.output_max_tokens)
        checked = Checked(None, None, "no answer")
        for attempt in range(self.spec.synthesis.max_repairs + 1):
            try:
                reply = await self.teacher.complete(
                    messages,
                    purpose="output" if attempt == 0 else "repair",
                    params=params,
                    sample=sample,
                )
            except TeacherRefused as exc:
                return Checked(None, None, f"teacher refused: asked for the answer, {exc}")
            outcome.paid(reply)
            outcome.last_answer = reply.text
            checked = check_output(reply.text, self.spec.output_schema)
            if checked.error is None:
                return checked
            messages = prompts.repair_messages(self.spec, messages, reply.text, checked.error)
        return checked

    async def _finished(self, outcome: Outcome, tally: Tally) -> None:
        tally.done += 1
        if outcome.reason is None:
            tally.accepted += 1
        else:
            tally.rejected += 1
        if self.progress and (
            tally.done % self.settings.progress_every == 0 or tally.done == tally.total
        ):
            await self.progress(tally)

    def _batch(self, outcomes: Iterable[Outcome]) -> Batch:
        batch = Batch()
        reasons: Counter[str] = Counter()
        for o in outcomes:
            usage = (o.prompt_tokens, o.completion_tokens)
            if o.reason is None and o.text is not None and o.output is not None:
                batch.rows.append(batch_row(o.planned, self.iteration, o.text, o.output, usage))
                continue
            reason = o.reason or "no answer"
            reasons[reason_kind(reason)] += 1
            batch.rejected.append(
                {
                    "index": o.planned.index,
                    "id": example_id(o.text) if o.text else None,
                    "use_case": o.planned.use_case,
                    "style": o.planned.style,
                    "negative": o.planned.negative,
                    "edge_case": o.planned.edge_case,
                    "aim": aim_label(o.planned.aim),
                    "iteration": self.iteration,
                    "input": o.text,
                    "answer": o.last_answer,
                    "reason": reason,
                    "prompt_tokens": usage[0],
                    "completion_tokens": usage[1],
                }
            )
        batch.reasons = dict(sorted(reasons.items()))
        return batch


def _disagreement(samples: list[Checked]) -> str:
    votes = Counter(c.vote for c in samples if c.vote is not None)
    largest = votes.most_common(1)[0][1] if votes else 0
    invalid = sorted({reason_kind(c.error) for c in samples if c.error})
    detail = f"; invalid answers: {', '.join(invalid)}" if invalid else ""
    return (
        f"no agreement: of {len(samples)} samples, {sum(votes.values())} valid, "
        f"the largest group agreeing has {largest}{detail}"
    )


async def gather_all(coros: Iterable[Coroutine[Any, Any, T]]) -> list[T]:
    """Run together; on the first failure cancel the rest and raise that failure itself."""
    try:
        async with asyncio.TaskGroup() as group:
            tasks = [group.create_task(c) for c in coros]
    except BaseExceptionGroup as failed:
        raise failed.exceptions[0] from None
    return [t.result() for t in tasks]
