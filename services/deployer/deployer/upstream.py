"""Calls to the served models (student servers, the teacher's endpoint) over their OpenAI API.

One pooled HTTP client for the gateway's lifetime: a fresh connection per request would add a
TCP handshake to every request's latency. Every call has a deadline (connect and whole call);
a timeout is a 504 to the client, any other failure to reach or read the upstream a 502, and an
upstream's own error status is passed through with its body.
"""

from __future__ import annotations

import os
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import httpx2

from .domain import Backend


class UpstreamError(Exception):
    def __init__(self, status: int, reason: str) -> None:
        super().__init__(reason)
        self.status = status  # what the gateway answers: 502, 504, or the upstream's 4xx/5xx
        self.reason = reason


@dataclass(frozen=True)
class Reply:
    body: dict[str, Any]
    status: int = 200


def _headers(backend: Backend) -> dict[str, str]:
    key = os.environ.get(backend.api_key_env, "") if backend.api_key_env else ""
    return {"Authorization": f"Bearer {key}"} if key else {}


class Upstream:
    def __init__(
        self, *, timeout_s: float, connect_timeout_s: float = 5.0, max_connections: int = 256
    ) -> None:
        self._client = httpx2.AsyncClient(
            timeout=httpx2.Timeout(timeout_s, connect=connect_timeout_s),
            limits=httpx2.Limits(
                max_connections=max_connections, max_keepalive_connections=max_connections
            ),
        )

    async def aclose(self) -> None:
        await self._client.aclose()

    async def chat(self, backend: Backend, body: dict[str, Any]) -> Reply:
        url = backend.base_url.rstrip("/") + "/chat/completions"
        try:
            response = await self._client.post(url, json=body, headers=_headers(backend))
        except httpx2.TimeoutException as exc:
            raise UpstreamError(504, f"upstream timed out: {exc!r}") from exc
        except httpx2.HTTPError as exc:
            raise UpstreamError(502, f"upstream unreachable: {exc!r}") from exc
        if response.status_code >= 400:
            raise UpstreamError(response.status_code, response.text[:2000])
        try:
            return Reply(response.json(), response.status_code)
        except ValueError as exc:
            raise UpstreamError(502, "upstream answered with a body that is not JSON") from exc

    async def chat_stream(self, backend: Backend, body: dict[str, Any]) -> AsyncIterator[str]:
        """The upstream's SSE `data:` payloads, as text, up to (not including) `[DONE]`.

        Closing the iterator (the client went away) closes the upstream connection, so the
        model server stops generating for nobody.
        """
        url = backend.base_url.rstrip("/") + "/chat/completions"
        try:
            async with self._client.stream(
                "POST", url, json=body, headers=_headers(backend)
            ) as response:
                if response.status_code >= 400:
                    text = (await response.aread()).decode(errors="replace")
                    raise UpstreamError(response.status_code, text[:2000])
                async for line in response.aiter_lines():
                    if not line.startswith("data:"):
                        continue
                    data = line[5:].strip()
                    if data == "[DONE]":
                        return
                    yield data
        except httpx2.TimeoutException as exc:
            raise UpstreamError(504, f"upstream timed out: {exc!r}") from exc
        except httpx2.HTTPError as exc:
            raise UpstreamError(502, f"upstream failed: {exc!r}") from exc
