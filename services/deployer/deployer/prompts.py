"""The task owns the prompt: the gateway renders the one the routed model was measured with.

A client sends the task's input (`model=<task>`, user messages only). The gateway puts in
front of it the system prompt of whichever model the route picked: the teacher gets the
task's full instructions, the student its short student prompt (TaskSpec.student_prompt, the
one it was trained and evaluated with) and, when the task has an output schema, the same
`response_format` the evaluator decoded under, with greedy decoding unless the client asked
otherwise. So clients never change when the student replaces the teacher.

A request that brings its own system message is passed through unchanged; the response says
so (`X-Distillery-Prompt: client`), since such a request is outside what was evaluated.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

from shared.models.decoding import response_format
from shared.tasks.spec import TaskSpec

from .domain import Backend

Source = Literal["task", "client"]


@dataclass(frozen=True)
class Rendered:
    body: dict[str, Any]  # the upstream request body
    source: Source


def schema_format(schema: dict[str, Any], backend: Backend) -> dict[str, Any]:
    """The task's schema as `response_format` in the dialect `backend` understands."""
    openai_form = response_format(schema)
    if backend.engine == "llama.cpp":  # its server accepts only "text" and "json_object"
        return {"type": "json_object", "schema": openai_form["json_schema"]["schema"]}
    return openai_form


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
        if spec.output_schema is not None and "response_format" not in body:
            upstream["response_format"] = schema_format(spec.output_schema, backend)
        upstream.setdefault("temperature", 0.0)
    upstream["messages"] = [{"role": "system", "content": system}, *messages]
    return Rendered(upstream, "task")
