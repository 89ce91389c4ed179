"""One chat completion through the gateway: render, call the routed model, answer, trace.

The answer is the routed model's; a shadow copy (rollout stage "shadow") goes to the candidate
after the decision, on its own task, and its answer only ever reaches the trace buffer.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections import Counter
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any
from uuid import UUID

import anyio
from starlette.responses import JSONResponse, Response, StreamingResponse

from shared.events import TrafficLogged

from .domain import Backend, Route, choose
from .instruments import (
    REQUEST_SECONDS,
    SHADOW_SKIPPED,
    TOKENS_PER_SECOND,
    TTFT_SECONDS,
    UPSTREAM_ERRORS,
)
from .prompts import Rendered, render
from .settings import NAME
from .traces import TraceBuffer
from .upstream import Upstream, UpstreamError

MAX_COMPLETION_CHARS = 65536


@dataclass(frozen=True)
class Call:
    request_id: UUID
    route: Route
    body: dict[str, Any]  # the client's request, validated
    sticky_id: str  # the API key's id, or the user id the client named
    started: float  # time.perf_counter() at arrival


def error_body(message: str, kind: str, code: str | None = None) -> dict[str, Any]:
    return {"error": {"message": message, "type": kind, "code": code, "param": None}}


def _status(code: int) -> str:
    return f"{code // 100}xx"


class Chat:
    def __init__(
        self, upstream: Upstream, traces: TraceBuffer, shadows_per_server: int = 4
    ) -> None:
        self._upstream = upstream
        self._traces = traces
        self._per_server = shadows_per_server
        self._shadows: set[asyncio.Task[None]] = set()
        self._in_flight: Counter[str] = Counter()  # shadow copies per candidate server

    async def handle(self, call: Call) -> Response:
        choice = choose(call.route, call.sticky_id)
        if choice.shadow is not None:
            self._mirror(call, choice.shadow)
        rendered = render(call.body, call.route.spec, choice.serve)
        headers = {
            "X-Request-Id": str(call.request_id),
            "X-Distillery-Route": choice.serve.kind,
            "X-Distillery-Prompt": rendered.source,
            "X-Distillery-Model-Version": choice.serve.version,
        }
        if call.body.get("stream"):
            return await self._stream(call, choice.serve, rendered, headers)
        return await self._complete(call, choice.serve, rendered, headers)

    async def _complete(
        self, call: Call, backend: Backend, rendered: Rendered, headers: dict[str, str]
    ) -> Response:
        try:
            reply = await self._upstream.chat(backend, rendered.body)
        except UpstreamError as exc:
            self._failed(call, backend, rendered, exc)
            body = error_body(exc.reason, "upstream_error")
            return JSONResponse(body, exc.status, headers)
        body = {**reply.body, "model": call.route.task}
        text = _message_text(body)
        usage = body.get("usage") or {}
        self._record(call, backend, rendered, text, usage, arm=backend.kind)
        self._observe(call, backend, 200, usage)
        return JSONResponse(body, 200, headers)

    async def _stream(
        self, call: Call, backend: Backend, rendered: Rendered, headers: dict[str, str]
    ) -> Response:
        chunks = self._upstream.chat_stream(backend, rendered.body)
        try:
            # The first chunk before the status line: an unreachable or refusing upstream is
            # then a proper 502/504/4xx, not a 200 with an error inside the stream.
            first = await anext(chunks)
        except StopAsyncIteration:
            first = None
        except UpstreamError as exc:
            self._failed(call, backend, rendered, exc)
            return JSONResponse(error_body(exc.reason, "upstream_error"), exc.status, headers)
        return StreamingResponse(
            self._relay(call, backend, rendered, first, chunks),
            media_type="text/event-stream",
            headers={**headers, "Cache-Control": "no-cache"},
        )

    async def _relay(
        self,
        call: Call,
        backend: Backend,
        rendered: Rendered,
        first: str | None,
        chunks: AsyncIterator[str],
    ) -> AsyncIterator[str]:
        parts: list[str] = []
        usage: dict[str, Any] = {}
        ttft: float | None = None
        error: str | None = "client disconnected"
        try:
            pending = [first] if first is not None else []
            while True:
                data = pending.pop() if pending else await anext(chunks)
                chunk = json.loads(data)
                chunk["model"] = call.route.task
                for choice in chunk.get("choices") or []:
                    parts.append((choice.get("delta") or {}).get("content") or "")
                if ttft is None and any(parts):
                    ttft = time.perf_counter() - call.started
                    TTFT_SECONDS.labels(backend.kind).observe(ttft)
                usage = chunk.get("usage") or usage
                yield f"data: {json.dumps(chunk)}\n\n"
        except StopAsyncIteration:
            error = None
            yield "data: [DONE]\n\n"
        except UpstreamError as exc:
            error = exc.reason
            UPSTREAM_ERRORS.labels(backend.kind, str(exc.status)).inc()
            yield f"data: {json.dumps(error_body(exc.reason, 'upstream_error'))}\n\n"
        finally:
            # Shielded: on a client disconnect this task is being cancelled, and closing the
            # upstream stream is what makes the model server stop generating.
            with anyio.CancelScope(shield=True):
                await chunks.aclose()  # type: ignore[attr-defined]
            ttft_ms = ttft * 1000 if ttft is not None else None
            text = "".join(parts)
            self._record(call, backend, rendered, text, usage, backend.kind, error, ttft_ms)
            self._observe(call, backend, 200 if error is None else 502, usage)

    def _mirror(self, call: Call, shadow: Backend) -> None:
        # A candidate usually answers slower than the live model takes traffic: copies beyond
        # a few would wait in its queue, and a copy timed out there is counted as the
        # candidate's error, measuring the mirror's rate, not the candidate. Skipped, counted.
        server = shadow.base_url
        if self._in_flight[server] >= self._per_server:
            SHADOW_SKIPPED.inc()
            return
        self._in_flight[server] += 1
        task = asyncio.create_task(self._shadow(call, shadow))
        self._shadows.add(task)

        def done(finished: asyncio.Task[None]) -> None:
            self._shadows.discard(finished)
            self._in_flight[server] -= 1
            if not self._in_flight[server]:  # servers come and go with rollouts
                del self._in_flight[server]

        task.add_done_callback(done)

    async def _shadow(self, call: Call, backend: Backend) -> None:
        rendered = render({**call.body, "stream": False}, call.route.spec, backend)
        started = time.perf_counter()
        try:
            reply = await self._upstream.chat(backend, rendered.body)
        except UpstreamError as exc:
            UPSTREAM_ERRORS.labels("shadow", str(exc.status)).inc()
            shadow_call = Call(call.request_id, call.route, call.body, call.sticky_id, started)
            self._record(shadow_call, backend, rendered, "", {}, "shadow", exc.reason)
            return
        usage = reply.body.get("usage") or {}
        shadow_call = Call(call.request_id, call.route, call.body, call.sticky_id, started)
        self._record(shadow_call, backend, rendered, _message_text(reply.body), usage, "shadow")

    def _failed(self, call: Call, backend: Backend, rendered: Rendered, exc: UpstreamError) -> None:
        UPSTREAM_ERRORS.labels(backend.kind, str(exc.status)).inc()
        self._record(call, backend, rendered, "", {}, backend.kind, exc.reason)
        self._observe(call, backend, exc.status, {})

    def _observe(self, call: Call, backend: Backend, status: int, usage: dict[str, Any]) -> None:
        elapsed = time.perf_counter() - call.started
        REQUEST_SECONDS.labels("chat", backend.kind, _status(status)).observe(elapsed)
        tokens = usage.get("completion_tokens") or 0
        if tokens and elapsed > 0:
            TOKENS_PER_SECOND.labels(backend.kind).observe(tokens / elapsed)

    def _record(
        self,
        call: Call,
        backend: Backend,
        rendered: Rendered,
        text: str,
        usage: dict[str, Any],
        arm: str,
        error: str | None = None,
        ttft_ms: float | None = None,
    ) -> None:
        event = TrafficLogged(
            producer=NAME,
            request_id=call.request_id,
            task_name=call.route.task,
            deployment_id=backend.deployment_id,
            arm=arm,  # type: ignore[arg-type]
            messages=[
                {"role": m["role"], "content": m["content"]} for m in rendered.body["messages"]
            ],
            completion=text[:MAX_COMPLETION_CHARS],
            latency_ms=(time.perf_counter() - call.started) * 1000,
            prompt_tokens=int(usage.get("prompt_tokens") or 0),
            completion_tokens=int(usage.get("completion_tokens") or 0),
            model_version=backend.version[:128],
            stage=call.route.stage,
            prompt_source=rendered.source,
            ttft_ms=ttft_ms,
            error=error[:2048] if error else None,
        )
        self._traces.offer(event)

    async def aclose(self) -> None:
        """Let shadow copies in flight finish (each has the upstream's deadline), then close."""
        await asyncio.gather(*self._shadows, return_exceptions=True)
        await self._upstream.aclose()


def _message_text(body: dict[str, Any]) -> str:
    choices = body.get("choices") or [{}]
    return str(((choices[0] or {}).get("message") or {}).get("content") or "")
