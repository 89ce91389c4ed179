"""The gateway as deployed: keys from the deployer's table, routes from the NATS KV bucket,
traces and feedback onto the real JetStream stream. Real nats-server, SQLite, local store.
"""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from pathlib import Path

import httpx2
import nats
import openai
import pytest

from deployer.gateway_main import create_app
from deployer.keys import issue
from deployer.repository import add_key, revoke_key
from deployer.routing import BackendEntry, RouteEntry, put_route, routes_bucket
from deployer.settings import DeployerSettings
from shared.artifacts import AsyncArtifactStore, LocalArtifactStore
from shared.db import Database
from shared.events import FeedbackRecorded, TrafficLogged
from shared.settings import PlatformSettings
from tests.fixtures.openai_upstream import SCHEMA_ANSWER, loopback_upstream, serving
from tests.fixtures.streams import stream_messages
from tests.fixtures.teacher_server import toy_spec


async def eventually(check, timeout: float = 5.0):
    deadline = time.monotonic() + timeout
    while True:
        result = await check()
        if result or time.monotonic() > deadline:
            return result
        await asyncio.sleep(0.05)


@pytest.fixture
async def routes(nats_server):
    nc = await nats.connect(nats_server.url)
    yield await routes_bucket(nc.jetstream())
    await nc.close()


async def test_keys_routes_and_traces_through_the_real_parts(
    nats_server, sqlite_db: Database, routes, tmp_path: Path
):
    task = f"toy-{uuid.uuid4().hex[:8]}"
    settings = PlatformSettings(
        nats_url=nats_server.url,
        database_url=sqlite_db.url,
        artifact_store="local",
        artifact_root=tmp_path / "store",
    )
    store = AsyncArtifactStore(LocalArtifactStore(tmp_path / "store"))
    secret, record = issue("app-1", [task])
    await add_key(sqlite_db, record)

    with (
        loopback_upstream(name="student") as student,
        loopback_upstream(name="teacher") as teacher,
    ):
        spec = await store.put_bytes(json.dumps(toy_spec(teacher.url)).encode())
        live = BackendEntry(kind="teacher", base_url=teacher.url, model="t", version="t")
        candidate = BackendEntry(kind="student", base_url=student.url, model="s", version="s1")
        await put_route(routes, RouteEntry(task=task, spec=spec, live=live))

        app = create_app(settings, DeployerSettings(key_refresh_s=0.2))
        with serving(app) as url:
            client = openai.AsyncOpenAI(base_url=f"{url}/v1", api_key=secret, max_retries=0)

            async def listed():
                try:
                    return [m.id async for m in client.models.list()] == [task]
                except openai.AuthenticationError:  # keys not read yet
                    return False

            assert await eventually(listed), "the gateway did not pick up the key and route"

            raw = await client.chat.completions.with_raw_response.create(
                model=task, messages=[{"role": "user", "content": "hi"}]
            )
            assert raw.headers["x-distillery-route"] == "teacher"
            request_id = raw.headers["x-request-id"]

            # The deployer moves the route; every replica follows the bucket within a second.
            await put_route(
                routes,
                RouteEntry(task=task, spec=spec, live=live, candidate=candidate, stage="full"),
            )

            async def on_student():
                raw = await client.chat.completions.with_raw_response.create(
                    model=task, messages=[{"role": "user", "content": "hi"}]
                )
                return raw.headers["x-distillery-route"] == "student" and raw.parse()

            reply = await eventually(on_student, timeout=1.5)
            assert reply and reply.choices[0].message.content == SCHEMA_ANSWER

            async with httpx2.AsyncClient() as http:
                response = await http.post(
                    f"{url}/v1/feedback",
                    json={"model": task, "request_id": request_id, "escalate": True},
                    headers={"Authorization": f"Bearer {secret}"},
                )
            assert response.status_code == 202

            async def traced():
                messages = await stream_messages(nats_server.url, "distillery.>")
                return [
                    m
                    for m in messages
                    if m.subject in (TrafficLogged.subject, FeedbackRecorded.subject)
                    and request_id in m.data.decode()
                ]

            found = await eventually(lambda: _two(traced))
            assert {m.subject for m in found} == {TrafficLogged.subject, FeedbackRecorded.subject}
            trace = next(
                TrafficLogged.model_validate_json(m.data)
                for m in found
                if m.subject == TrafficLogged.subject
            )
            assert trace.arm == "teacher" and trace.task_name == task
            rated = next(
                FeedbackRecorded.model_validate_json(m.data)
                for m in found
                if m.subject == FeedbackRecorded.subject
            )
            # No x-distillery-user: the key stands for its user, so per-user caps still hold.
            assert (rated.key_id, rated.user_id, rated.escalate) == ("app-1", "app-1", True)

            # Revoked: refused within the refresh interval, on this (and every) replica.
            assert await revoke_key(sqlite_db, "app-1")

            async def refused():
                try:
                    await client.models.list()
                except openai.AuthenticationError:
                    return True
                return False

            assert await eventually(refused, timeout=1.0)
            await client.close()


async def _two(traced):
    found = await traced()
    return found if len(found) >= 2 else None


async def test_a_teacher_route_outside_residency_is_never_served(
    nats_server, sqlite_db: Database, routes, tmp_path: Path
):
    task, allowed = f"toy-{uuid.uuid4().hex[:8]}", f"toy-{uuid.uuid4().hex[:8]}"
    settings = PlatformSettings(
        nats_url=nats_server.url,
        database_url=sqlite_db.url,
        artifact_store="local",
        artifact_root=tmp_path / "store",
    )
    store = AsyncArtifactStore(LocalArtifactStore(tmp_path / "store"))
    secret, record = issue("app-2", [task, allowed])
    await add_key(sqlite_db, record)
    spec = await store.put_bytes(json.dumps(toy_spec("http://127.0.0.1:9/v1")).encode())
    # The spec allows 127.0.0.1 only; the first route would send task data elsewhere.
    far = BackendEntry(kind="teacher", base_url="http://10.9.9.9/v1", model="t", version="t")
    near = BackendEntry(kind="teacher", base_url="http://127.0.0.1:9/v1", model="t", version="t")
    await put_route(routes, RouteEntry(task=task, spec=spec, live=far))
    await put_route(routes, RouteEntry(task=allowed, spec=spec, live=near))
    with serving(create_app(settings, DeployerSettings(key_refresh_s=0.2))) as url:
        client = openai.AsyncOpenAI(base_url=f"{url}/v1", api_key=secret, max_retries=0)

        async def served():
            try:
                return [m.id async for m in client.models.list()]
            except openai.AuthenticationError:
                return []

        # The bucket is read in order: once the later route is served, the first was judged.
        assert await eventually(lambda: _has(served, allowed))
        assert task not in await served()
        with pytest.raises(openai.NotFoundError):
            await client.chat.completions.create(
                model=task, messages=[{"role": "user", "content": "hi"}]
            )
        await client.close()


async def _has(served, task: str) -> bool:
    return task in await served()
