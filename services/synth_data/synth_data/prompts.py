"""What the teacher is asked. Two calls make one example:

1. write one realistic input for a use case, in a style, maybe an edge case or a negative;
2. the production call itself: system = the task's instructions, user = that input. Its
   answer is exactly what the student will learn to give.

The line formats of the first prompt ("Use case: <name>", "Kind: negative") are stable: the
scripted teacher of the tests and anyone reading the cache parse them.
"""

from __future__ import annotations

import json
from typing import Any

from shared.tasks.spec import TaskSpec

from .domain import Planned, declines

Messages = list[dict[str, str]]

INPUT_SYSTEM = (
    "You write realistic example inputs for an assistant that does one narrow task. Reply with "
    "the input text only, exactly as its author would send it: no preamble, no quotation marks, "
    "no labels, and never the answer to it."
)
REPAIR = (
    "Your reply cannot be used: {error}. Answer my previous message again, following the "
    "instructions exactly, and reply with the corrected answer only."
)
REPAIR_SCHEMA = " It must be one JSON object that validates against this JSON schema: {schema}"


def input_messages(spec: TaskSpec, planned: Planned) -> Messages:
    use_case = next(u for u in spec.use_cases if u.name == planned.use_case)
    about = f" ({use_case.description})" if use_case.description else ""
    lines = [
        "The assistant works under these instructions:",
        "<instructions>",
        spec.instructions,
        "</instructions>",
        "",
        "Write one new input this assistant could receive.",
        f"Use case: {use_case.name}{about}",
        f"Style: {planned.style}",
    ]
    if planned.edge_case:
        lines.append(f"Edge case: {planned.edge_case}")
    if planned.negative:
        lines.append(
            f"Kind: negative. {spec.negatives.description}. Write an input the assistant cannot "
            "answer from its content and must decline or escalate; at first glance it may look "
            "like the use case above."
        )
    reference = _reference(spec, planned)
    if reference:
        lines += [
            "",
            "For reference only, an input of this kind (write a different one: vary the names, "
            "details, wording and length):",
            reference,
        ]
    return [
        {"role": "system", "content": INPUT_SYSTEM},
        {"role": "user", "content": "\n".join(lines)},
    ]


def _reference(spec: TaskSpec, planned: Planned) -> str | None:
    """A seed example of the same kind, rotated by position so prompts (and inputs) vary."""
    if planned.negative:
        pool = [
            e.input
            for e in spec.seed_examples
            if spec.negatives.expected and declines(e.output, spec.negatives.expected)
        ]
    else:
        pool = [
            e.input
            for e in spec.seed_examples
            if e.use_case == planned.use_case
            and not (spec.negatives.expected and declines(e.output, spec.negatives.expected))
        ]
    return pool[planned.index % len(pool)] if pool else None


def answer_messages(spec: TaskSpec, text: str) -> Messages:
    """The production call: what the student will be asked, verbatim."""
    return [{"role": "system", "content": spec.instructions}, {"role": "user", "content": text}]


def repair_messages(spec: TaskSpec, previous: Messages, answer: str, error: str) -> Messages:
    request = REPAIR.format(error=error)
    if spec.output_schema is not None:
        request += REPAIR_SCHEMA.format(schema=json.dumps(spec.output_schema, sort_keys=True))
    return [
        *previous,
        {"role": "assistant", "content": answer},
        {"role": "user", "content": request},
    ]


def params(temperature: float, max_tokens: int) -> dict[str, Any]:
    return {"temperature": temperature, "max_tokens": max_tokens}
