"""What the teacher is asked, and how its replies are read. Two calls make one example:

1. write one realistic input for a use case, in a style, maybe an edge case, a negative, or
   an aim at a confusion the student made (`Aim:`, labels only);
2. the production call itself: system = the task's full instructions (never the student's
   short prompt: the teacher is the one that must follow every rule), user = that input. Its
   answer is exactly what the student will learn to give.

The line formats of the first prompt ("Use case: <name>", "Kind: negative", "Aim: ...") are
stable: the scripted teacher of the tests and anyone reading the cache parse them.
"""

from __future__ import annotations

import functools
import json
import re
from dataclasses import dataclass
from typing import Any

from jsonschema import Draft202012Validator

from shared.tasks.spec import TaskSpec

from .domain import INVALID, Aim, Planned, canonical, declines

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
_FENCE = re.compile(r"^```[\w-]*\s*\n?(.*?)\n?```$", re.DOTALL)


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
    if planned.aim:
        lines.append(aim_line(planned.aim))
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


def aim_line(aim: Aim) -> str:
    """Asks for an input that separates the label the student missed from the one it gave."""
    want = f"{aim.field}: {aim.expected}"
    if aim.got == INVALID:
        return f"Aim: an input whose right answer has {want}; make the evidence for it clear."
    return (
        f"Aim: a case that distinguishes {want} from {aim.field}: {aim.got}. Its right answer "
        f"has {want}, though a careless reader could answer {aim.got}; the input must contain "
        f"what makes it {aim.expected} and not {aim.got}, without naming either label."
    )


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


def clean_input(text: str) -> str:
    """The written input without the wrapping a chat model likes to add."""
    text = text.strip()
    fenced = _FENCE.match(text)
    if fenced:
        text = fenced.group(1).strip()
    if len(text) >= 2 and text[0] == text[-1] and text[0] in "\"'":
        text = text[1:-1].strip()
    return text


@dataclass(frozen=True)
class Checked:
    """A teacher answer judged against the task: the output to keep, or why not."""

    output: str | None
    vote: str | None  # canonical form, what self-consistency compares
    error: str | None


def check_output(text: str, schema: dict[str, Any] | None) -> Checked:
    text = text.strip()
    if schema is None:
        if not text:
            return Checked(None, None, "empty: the answer is blank")
        return Checked(text, " ".join(text.split()), None)
    value, problem = _parse_json(text)
    if problem:
        return Checked(None, None, problem)
    errors = sorted(_validator(canonical(schema)).iter_errors(value), key=_error_order)
    if errors:
        first = errors[0]
        where = "$" + "".join(f"[{p!r}]" if isinstance(p, int) else f".{p}" for p in first.path)
        more = f" (and {len(errors) - 1} more)" if len(errors) > 1 else ""
        return Checked(None, None, f"schema: {where}: {first.message}{more}")
    # The student learns this exact text: one JSON object, the teacher's key order.
    return Checked(json.dumps(value, ensure_ascii=False), canonical(value), None)


def _parse_json(text: str) -> tuple[Any, str | None]:
    candidates = [text]
    fenced = _FENCE.match(text)
    if fenced:
        candidates.append(fenced.group(1))
    start, end = text.find("{"), text.rfind("}")
    if 0 <= start < end:
        candidates.append(text[start : end + 1])  # prose around one object
    for candidate in candidates:
        try:
            return json.loads(candidate), None
        except ValueError:
            continue
    shown = text[:80] + ("..." if len(text) > 80 else "")
    return None, f"not JSON: the answer {shown!r} is not a JSON document"


def _error_order(error: Any) -> tuple[int, str]:
    return (len(error.path), error.message)


@functools.lru_cache(maxsize=32)
def _validator(schema_json: str) -> Draft202012Validator:
    return Draft202012Validator(json.loads(schema_json))
