"""`/v1/completions`, the OpenAI text endpoint, answered through the chat path.

A task's input is one text, so a completion request is a chat request whose one user turn is
the prompt: the gateway renders the routed model's prompt around it, routes, shadows, limits
and traces it exactly as `/v1/chat/completions` (chat.py), and only the answer's shape is
translated back: a `text_completion` object, or SSE chunks with `choices[].text`. Model
servers are only ever asked for chat completions, so a task's prompt and schema apply the
same whichever endpoint a client uses.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Iterable
from typing import Any

from starlette.responses import JSONResponse, Response, StreamingResponse

# Sampling and streaming options with the same meaning on both endpoints; the rest of a
# completion body (echo, suffix, best_of, logprobs) has no chat equivalent and is refused.
SHARED_OPTIONS = frozenset(
    {
        "model",
        "max_tokens",
        "temperature",
        "top_p",
        "n",
        "stop",
        "stream",
        "stream_options",
        "presence_penalty",
        "frequency_penalty",
        "seed",
        "user",
    }
)
UNSUPPORTED = frozenset({"echo", "suffix", "best_of", "logprobs", "logit_bias"})


class CompletionRequestError(ValueError):
    """A completion body the chat path cannot answer faithfully; the message says why."""


def to_chat(body: dict[str, Any]) -> dict[str, Any]:
    """The chat request that answers this completion request."""
    prompt = body.get("prompt")
    if isinstance(prompt, list) and len(prompt) == 1:
        prompt = prompt[0]  # the client libraries send one prompt as a list of one
    if not isinstance(prompt, str) or not prompt.strip():
        raise CompletionRequestError("`prompt` must be one non-empty string (the task's input)")
    asked = sorted(k for k in UNSUPPORTED if body.get(k) not in (None, False, 0))
    if asked:
        raise CompletionRequestError(f"not supported through a task's chat path: {asked}")
    chat = {k: v for k, v in body.items() if k in SHARED_OPTIONS}
    chat["messages"] = [{"role": "user", "content": prompt}]
    return chat


def completion_body(chat: dict[str, Any]) -> dict[str, Any]:
    """A chat.completion body as a text_completion body."""
    return _shaped(chat, "message")


def completion_chunk(chunk: dict[str, Any]) -> dict[str, Any]:
    """A chat.completion.chunk as a text_completion stream chunk."""
    return _shaped(chunk, "delta")


def _shaped(chat: dict[str, Any], part: str) -> dict[str, Any]:
    # A whole answer carries each choice's text in "message", a stream chunk in "delta".
    out = {
        "id": chat.get("id"),
        "object": "text_completion",
        "created": chat.get("created"),
        "model": chat.get("model"),
        "choices": [
            {
                "index": c.get("index", i),
                "text": ((c.get(part) or {}).get("content")) or "",
                "finish_reason": c.get("finish_reason"),
                "logprobs": None,
            }
            for i, c in enumerate(chat.get("choices") or [])
        ],
    }
    if chat.get("usage"):
        out["usage"] = chat["usage"]
    return out


async def _translated(events: AsyncIterator[str | bytes]) -> AsyncIterator[str]:
    # chat.Chat._relay yields whole SSE events ("data: ...\n\n"), one per item.
    async for item in events:
        text = item.decode() if isinstance(item, bytes) else item
        data = text.removeprefix("data: ").strip()
        if data == "[DONE]":
            yield text
            continue
        parsed = json.loads(data)
        if "error" in parsed:  # an upstream failure mid-stream: the OpenAI error body, as is
            yield text
            continue
        yield f"data: {json.dumps(completion_chunk(parsed))}\n\n"


def as_completion(response: Response) -> Response:
    """The chat path's response in completion shapes; errors (OpenAI error bodies) unchanged."""
    headers = _own_headers(response.headers.items())
    if isinstance(response, StreamingResponse):
        return StreamingResponse(
            _translated(response.body_iterator),  # type: ignore[arg-type]
            status_code=response.status_code,
            media_type="text/event-stream",
            headers=headers,
        )
    if response.status_code >= 400:
        return response
    chat = json.loads(bytes(response.body))
    return JSONResponse(completion_body(chat), response.status_code, headers)


def _own_headers(items: Iterable[tuple[str, str]]) -> dict[str, str]:
    # The gateway's own headers (request id, route, prompt, model version); Starlette sets
    # content-type and content-length for the new body.
    skip = {"content-length", "content-type"}
    return {k: v for k, v in items if k.lower() not in skip}
