"""The gateway (data plane): an OpenAI-compatible HTTP API in front of the served models.

`create_gateway(deps)` builds the Starlette app from what it needs; the composition (bus,
database, routes) is in gateway_main.py. Order of checks on a request, cheapest first: the
key (401), its request budget (429), the body's size (413) and shape (400), the key's scope
for the task (403), the task's route (404). Errors use the OpenAI error body, so the official
client raises its own typed exceptions (AuthenticationError, RateLimitError, ...).
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any
from uuid import UUID, uuid4

from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route as HttpRoute

from shared.events import FeedbackRecorded

from .budget import Limiter
from .chat import Call, Chat, error_body
from .completions import CompletionRequestError, as_completion, to_chat
from .domain import Route
from .instruments import REFUSED, REQUEST_SECONDS
from .keys import ApiKey, KeyRing
from .settings import NAME, DeployerSettings
from .traces import TraceBuffer

ROLES = {"system", "user", "assistant", "tool"}
MAX_MESSAGES = 256
USER_HEADER = "x-distillery-user"  # sticky A/B per end user instead of per key


class RoutingTable:
    """task -> Route, replaced whole when the rollout changes (never edited in place)."""

    def __init__(self, routes: dict[str, Route] | None = None) -> None:
        self._routes = dict(routes or {})

    def get(self, task: str) -> Route | None:
        return self._routes.get(task)

    def tasks(self) -> list[str]:
        return sorted(self._routes)

    def replace(self, routes: dict[str, Route]) -> None:
        self._routes = dict(routes)

    def set(self, task: str, route: Route) -> None:
        self._routes = {**self._routes, task: route}

    def remove(self, task: str) -> None:
        self._routes = {k: v for k, v in self._routes.items() if k != task}


@dataclass
class GatewayDeps:
    settings: DeployerSettings
    keys: KeyRing
    routes: RoutingTable
    limiter: Limiter
    traces: TraceBuffer
    chat: Chat
    # Run from start-up to shutdown next to the trace drainer: key and route refreshers.
    background: list[Callable[[asyncio.Event], Awaitable[None]]] = field(default_factory=list)


class Refused(Exception):
    def __init__(self, status: int, message: str, kind: str, **headers: str) -> None:
        super().__init__(message)
        self.status, self.message, self.kind, self.headers = status, message, kind, headers

    def response(self) -> Response:
        REFUSED.labels(str(self.status)).inc()
        return JSONResponse(error_body(self.message, self.kind), self.status, self.headers)


def create_gateway(deps: GatewayDeps) -> Starlette:
    settings = deps.settings

    async def admit(request: Request) -> ApiKey:
        key = deps.keys.authenticate(request.headers.get("authorization"))
        if key is None:
            raise Refused(401, "missing or invalid API key", "invalid_request_error")
        budget = key.requests_per_minute or settings.requests_per_minute
        decision = await deps.limiter.check(key.key_id, budget)
        if not decision.allowed:
            raise Refused(
                429,
                f"rate limit of {budget} requests per minute reached",
                "rate_limit_error",
                **{"Retry-After": str(decision.retry_after_s)},
            )
        return key

    async def read_json(request: Request) -> dict[str, Any]:
        declared = request.headers.get("content-length")
        if declared is not None and declared.isdigit() and int(declared) > settings.max_body_bytes:
            raise Refused(
                413, f"body over {settings.max_body_bytes} bytes", "invalid_request_error"
            )
        raw = bytearray()
        async for part in request.stream():  # a chunked body has no length to check up front
            raw += part
            if len(raw) > settings.max_body_bytes:
                raise Refused(
                    413, f"body over {settings.max_body_bytes} bytes", "invalid_request_error"
                )
        try:
            body = json.loads(raw)
        except ValueError:
            raise Refused(400, "body is not JSON", "invalid_request_error") from None
        if not isinstance(body, dict):
            raise Refused(400, "body must be a JSON object", "invalid_request_error")
        if "grammar" in body:
            # llama.cpp's server dies on a grammar its parser refuses; the gateway writes this
            # field itself, from the task's schema (prompts.decoding).
            raise Refused(
                400, "`grammar` is not accepted; send `response_format`", "invalid_request_error"
            )
        return body

    def task_of(body: dict[str, Any], key: ApiKey) -> Route:
        task = body.get("model")
        if not isinstance(task, str) or not task:
            raise Refused(400, "`model` must name a task", "invalid_request_error")
        if not key.allows(task):
            raise Refused(403, f"this key may not use task {task!r}", "permission_error")
        route = deps.routes.get(task)
        if route is None:
            raise Refused(404, f"no task named {task!r} is served", "invalid_request_error")
        return route

    async def accepted(
        request: Request, endpoint: str, as_chat: Callable[[dict[str, Any]], dict[str, Any]]
    ) -> Call | Response:
        """The checks every completion endpoint makes, in order; the chat request, or the
        refusal to send."""
        started = time.perf_counter()
        try:
            key = await admit(request)
            body = as_chat(await read_json(request))
            route = task_of(body, key)
        except Refused as refused:
            REQUEST_SECONDS.labels(endpoint, "none", f"{refused.status // 100}xx").observe(
                time.perf_counter() - started
            )
            return refused.response()
        sticky = request.headers.get(USER_HEADER) or key.key_id
        return Call(uuid4(), route, body, sticky, started)

    def chat_body(body: dict[str, Any]) -> dict[str, Any]:
        check_messages(body.get("messages"))
        return body

    def text_body(body: dict[str, Any]) -> dict[str, Any]:
        try:
            return to_chat(body)
        except CompletionRequestError as exc:
            raise Refused(400, str(exc), "invalid_request_error") from None

    async def chat_completions(request: Request) -> Response:
        call = await accepted(request, "chat", chat_body)
        return call if isinstance(call, Response) else await deps.chat.handle(call)

    async def text_completions(request: Request) -> Response:
        # The same checks and the same chat path; only the answer's shape differs.
        call = await accepted(request, "completions", text_body)
        return call if isinstance(call, Response) else as_completion(await deps.chat.handle(call))

    async def models(request: Request) -> Response:
        try:
            key = await admit(request)
        except Refused as refused:
            return refused.response()
        data = [
            {"id": task, "object": "model", "created": 0, "owned_by": "distillery"}
            for task in deps.routes.tasks()
            if key.allows(task)
        ]
        return JSONResponse({"object": "list", "data": data})

    async def feedback(request: Request) -> Response:
        try:
            key = await admit(request)
            body = await read_json(request)
            task_of(body, key)
            event = feedback_event(
                body, key_id=key.key_id, user_id=request.headers.get(USER_HEADER)
            )
        except Refused as refused:
            return refused.response()
        deps.traces.offer(event)
        return JSONResponse({"status": "accepted", "request_id": str(event.request_id)}, 202)

    async def metrics(_: Request) -> Response:
        return Response(generate_latest(), media_type=CONTENT_TYPE_LATEST)

    async def health(_: Request) -> Response:
        return JSONResponse({"status": "ok", "tasks": len(deps.routes.tasks())})

    @asynccontextmanager
    async def lifespan(_: Starlette) -> AsyncIterator[None]:
        stop = asyncio.Event()
        tasks = [asyncio.create_task(deps.traces.run(stop), name="gateway-traces")]
        tasks += [asyncio.create_task(job(stop)) for job in deps.background]
        try:
            yield
        finally:
            await deps.chat.aclose()  # shadows in flight: their traces still reach the buffer
            stop.set()
            await asyncio.gather(*tasks, return_exceptions=True)

    return Starlette(
        lifespan=lifespan,
        routes=[
            HttpRoute("/v1/chat/completions", chat_completions, methods=["POST"]),
            HttpRoute("/v1/completions", text_completions, methods=["POST"]),
            HttpRoute("/v1/models", models, methods=["GET"]),
            HttpRoute("/v1/feedback", feedback, methods=["POST"]),
            HttpRoute("/metrics", metrics, methods=["GET"]),
            HttpRoute("/health", health, methods=["GET"]),
        ],
    )


def check_messages(messages: Any) -> None:
    if not isinstance(messages, list) or not 1 <= len(messages) <= MAX_MESSAGES:
        raise Refused(400, f"`messages` must hold 1 to {MAX_MESSAGES}", "invalid_request_error")
    for i, message in enumerate(messages):
        if (
            not isinstance(message, dict)
            or message.get("role") not in ROLES
            or not isinstance(message.get("content"), str)
        ):
            raise Refused(
                400,
                f"messages[{i}] must have a role in {sorted(ROLES)} and text content",
                "invalid_request_error",
            )


def feedback_event(
    body: dict[str, Any], *, key_id: str | None = None, user_id: str | None = None
) -> FeedbackRecorded:
    """`{"model": task, "request_id": ..., "rating"?, "correction"?, "escalate"?, "comment"?}`.

    The task is named by the client, not looked up by request id: the request may have been
    served by another replica, and a lookup table shared by all of them is not worth keeping.
    The key is the one that sent it and the user the `x-distillery-user` header names, under
    that key (`key/user`, so no key can speak for another key's users; with no header the
    key stands for its user): the feedback-collector caps contributions by both. A key vouches
    for the users it names, so one key inventing users is held by its per-key cap.
    """
    rating, correction = body.get("rating"), body.get("correction")
    escalate = body.get("escalate", False)
    if rating is None and correction is None and not escalate:
        raise Refused(400, "give a rating, a correction or escalate: true", "invalid_request_error")
    try:
        return FeedbackRecorded(
            producer=NAME,
            request_id=UUID(str(body.get("request_id"))),
            task_name=body["model"],
            rating=rating,
            correction=correction,
            comment=body.get("comment"),
            escalate=escalate,
            key_id=key_id,
            user_id=f"{key_id}/{user_id}"[:128] if key_id and user_id else user_id or key_id,
        )
    except ValueError as exc:  # pydantic's ValidationError is a ValueError
        raise Refused(400, f"invalid feedback: {exc}", "invalid_request_error") from None
