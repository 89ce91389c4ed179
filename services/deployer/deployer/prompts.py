"""The task owns the prompt: the gateway renders the one the routed model was measured with.

A client sends the task's input (`model=<task>`, user messages only). The gateway puts in
front of it the system prompt of whichever model the route picked: the teacher gets the
task's full instructions, the student its short student prompt (TaskSpec.student_prompt, the
one it was trained and evaluated with) and, when the task has an output schema, the same
schema and greedy decoding the evaluator measured it with, unless the client asked otherwise
(`decoding`). So clients never change when the student replaces the teacher.

A request that brings its own system message is passed through unchanged; the response says
so (`X-Distillery-Prompt: client`), since such a request is outside what was evaluated.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from functools import lru_cache
from typing import Any, Literal

from shared.models.decoding import response_format
from shared.models.gbnf import schema_gbnf
from shared.tasks.spec import TaskSpec

from .domain import Backend

Source = Literal["task", "client"]


@dataclass(frozen=True)
class Rendered:
    body: dict[str, Any]  # the upstream request body
    source: Source


@lru_cache(maxsize=64)
def _gbnf(schema_json: str) -> str:
    return schema_gbnf(json.loads(schema_json))


def decoding(schema: dict[str, Any] | None, backend: Backend) -> dict[str, Any]:
    """The request fields that make `backend` decode as the student was measured: greedy, and
    under the task's schema when it has one.

    llama.cpp's server gets the schema as a GBNF `grammar` (gbnf.py: the very language of the
    evaluator's xgrammar grammar; its own `json_object` converter admits other whitespace) and
    `repeat_penalty` 1.0 (its server's default is 1.1, which the measured greedy never used).
    vLLM gets the OpenAI `response_format`, compiled by its xgrammar backend as measured.
    """
    fields: dict[str, Any] = {"temperature": 0.0}
    if backend.engine == "llama.cpp":
        fields["repeat_penalty"] = 1.0
        if schema is not None:
            fields["grammar"] = _gbnf(json.dumps(schema, sort_keys=True))
    elif schema is not None:
        fields["response_format"] = response_format(schema)
    return fields


def render(body: dict[str, Any], spec: TaskSpec, backend: Backend) -> Rendered:
    """The upstream chat request for `backend`; `body` is the client's, already validated."""
    messages = list(body["messages"])
    upstream = {**body, "model": backend.model}
    if any(m.get("role") == "system" for m in messages):
        return Rendered(upstream, "client")
    if backend.kind == "teacher":
        system = spec.instructions
    else:
        system = spec.student_prompt
        schema = None if "response_format" in body else spec.output_schema
        for name, value in decoding(schema, backend).items():
            upstream.setdefault(name, value)
    upstream["messages"] = [{"role": "system", "content": system}, *messages]
    return Rendered(upstream, "task")
