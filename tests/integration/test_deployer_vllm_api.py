"""The vLLM backend's HTTP calls against a loopback server speaking vLLM's endpoints (scripted,
tests/fixtures/openai_upstream.py), and the gateway's requests to a vLLM route."""

from __future__ import annotations

from uuid import uuid4

import pytest

from deployer.chat import Call, Chat
from deployer.domain import Backend, Route
from deployer.servers import ServerError
from deployer.traces import TraceBuffer
from deployer.upstream import Upstream
from deployer.vllm import VllmApi
from shared.models.decoding import response_format
from shared.tasks import parse_spec
from tests.fixtures.openai_upstream import loopback_upstream
from tests.fixtures.teacher_server import toy_spec


async def test_adapters_are_loaded_into_and_out_of_a_running_server():
    with loopback_upstream(name="toy-triage-student") as server:
        api = VllmApi(f"http://127.0.0.1:{server.port}")
        await api.load_adapter("candidate-2", "/models/toy/adapter-2")
        assert server.adapters == {"candidate-2": "/models/toy/adapter-2"}
        assert await api.models() == ["toy-triage-student", "candidate-2"]
        (loaded,) = [s for s in server.requests if s.path == "/v1/load_lora_adapter"]
        assert loaded.body == {"lora_name": "candidate-2", "lora_path": "/models/toy/adapter-2"}
        await api.unload_adapter("candidate-2")
        assert server.adapters == {}

        server.fail_next(1, status=400)
        with pytest.raises(ServerError, match="400"):
            await api.load_adapter("bad", "/nowhere")
    with pytest.raises(ServerError, match="load_lora_adapter"):
        await VllmApi(f"http://127.0.0.1:{server.port}", timeout_s=1).load_adapter("x", "/x")


class Drop:
    async def publish_event(self, event) -> None:
        return None


async def test_a_vllm_route_gets_the_adapter_name_and_the_openai_schema_form():
    spec = parse_spec(toy_spec("http://127.0.0.1:9/v1"))
    with loopback_upstream(name="base") as server:
        adapter = Backend("student", server.url, "candidate-2", "c" * 64, uuid4(), None, "vllm")
        chat = Chat(Upstream(timeout_s=5), TraceBuffer(Drop(), 10))
        body = {"model": "toy-triage", "messages": [{"role": "user", "content": "hi"}]}
        response = await chat.handle(
            Call(uuid4(), Route("toy-triage", spec, adapter), body, "k", 0)
        )
        await chat.aclose()
    assert response.status_code == 200
    (sent,) = server.chats()
    # vLLM picks the LoRA by the request's model name; the schema goes in OpenAI's form.
    assert sent.body["model"] == "candidate-2"
    assert sent.body["response_format"] == response_format(spec.output_schema)
