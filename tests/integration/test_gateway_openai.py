"""The gateway through the official `openai` client (sync, async, streaming), on loopback.

Upstreams are scripted OpenAI-compatible servers (tests/fixtures/openai_upstream.py) that
record what the gateway sent them; traces land in a recording publisher (a fake of the bus
port the gateway publishes through).
"""

from __future__ import annotations

import asyncio
import json

import httpx2
import openai
import pytest

from shared.events import FeedbackRecorded
from shared.models.decoding import response_format
from tests.fixtures.gateway import TASK, wait_for
from tests.fixtures.openai_upstream import (
    FREE_TEXT,
    SCHEMA_ANSWER,
)


def user(text: str) -> list[dict[str, str]]:
    return [{"role": "user", "content": text}]


def test_sync_client_gets_the_students_answer_rendered_with_the_student_prompt(gateway):
    raw = gateway.client().chat.completions.with_raw_response.create(
        model=TASK, messages=user("I was charged twice for order 101.")
    )
    reply = raw.parse()
    assert reply.choices[0].message.content == SCHEMA_ANSWER
    assert reply.model == TASK  # the client asked for the task, not for a model
    assert raw.headers["x-distillery-route"] == "student"
    assert raw.headers["x-distillery-prompt"] == "task"

    (sent,) = gateway.student.chats()
    spec = gateway.deps.routes.get(TASK).spec
    assert sent.body["model"] == "student-adapter"
    assert sent.body["messages"] == [
        {"role": "system", "content": spec.student_prompt},
        {"role": "user", "content": "I was charged twice for order 101."},
    ]
    assert sent.body["response_format"] == response_format(spec.output_schema)
    assert sent.body["temperature"] == 0.0
    assert not gateway.teacher.chats()

    wait_for(lambda: gateway.traces())
    (trace,) = gateway.traces()
    assert str(trace.request_id) == raw.headers["x-request-id"]
    assert (trace.arm, trace.prompt_source, trace.completion) == ("student", "task", SCHEMA_ANSWER)
    assert trace.messages[0].content == spec.student_prompt
    assert trace.model_version == "a" * 64
    assert trace.completion_tokens > 0 and trace.error is None


async def test_async_client_streams_and_the_trace_has_the_whole_reply(gateway):
    client = openai.AsyncOpenAI(
        base_url=f"{gateway.url}/v1", api_key=gateway.keys["toy"], max_retries=0
    )
    stream = await client.chat.completions.create(
        model=TASK, messages=user("Invoice 7 shows the wrong amount."), stream=True
    )
    parts = [chunk.choices[0].delta.content or "" async for chunk in stream if chunk.choices]
    await client.close()
    assert "".join(parts) == SCHEMA_ANSWER
    assert len(parts) > 2  # really streamed, not one blob
    assert gateway.student.chats()[0].body["stream"] is True

    await asyncio.to_thread(wait_for, lambda: gateway.traces())
    (trace,) = gateway.traces()
    assert trace.completion == SCHEMA_ANSWER
    assert trace.ttft_ms is not None and trace.ttft_ms <= trace.latency_ms
    assert trace.completion_tokens > 0  # from the stream's final usage chunk


def test_sync_streaming(gateway):
    stream = gateway.client().chat.completions.create(
        model=TASK, messages=user("API call 3 keeps failing."), stream=True
    )
    text = "".join(c.choices[0].delta.content or "" for c in stream if c.choices)
    assert text == SCHEMA_ANSWER


def test_text_completions_take_the_chat_path_with_the_task_prompt(gateway):
    client = gateway.client()
    raw = client.completions.with_raw_response.create(
        model=TASK, prompt="I was charged twice for order 101."
    )
    reply = raw.parse()
    assert reply.object == "text_completion" and reply.model == TASK
    assert reply.choices[0].text == SCHEMA_ANSWER
    assert reply.usage is not None and reply.usage.completion_tokens > 0
    assert raw.headers["x-distillery-route"] == "student"
    # The model server was asked for a chat completion under the student prompt and schema.
    (sent,) = gateway.student.chats()
    spec = gateway.deps.routes.get(TASK).spec
    assert sent.body["messages"] == [
        {"role": "system", "content": spec.student_prompt},
        {"role": "user", "content": "I was charged twice for order 101."},
    ]
    assert sent.body["response_format"] == response_format(spec.output_schema)
    wait_for(lambda: gateway.traces())
    (trace,) = gateway.traces()
    assert str(trace.request_id) == raw.headers["x-request-id"]
    assert trace.completion == SCHEMA_ANSWER

    stream = client.completions.create(model=TASK, prompt="API call 3 keeps failing.", stream=True)
    parts = [c.choices[0].text for c in stream if c.choices]
    assert "".join(parts) == SCHEMA_ANSWER and len(parts) > 2

    with pytest.raises(openai.BadRequestError, match="prompt"):
        client.completions.create(model=TASK, prompt=["one", "two"])
    with pytest.raises(openai.BadRequestError, match="echo"):
        client.completions.create(model=TASK, prompt="hello", echo=True)
    with pytest.raises(openai.PermissionDeniedError):  # the key's scope, as for chat
        client.completions.create(model="no-such-task", prompt="hello")


def test_teacher_route_gets_the_full_instructions_and_no_schema(make_gateway):
    gateway = make_gateway(stage="rolled_back")  # the teacher is live, the student rolled back
    reply = gateway.client().chat.completions.create(model=TASK, messages=user("hello"))
    assert reply.choices[0].message.content == FREE_TEXT
    (sent,) = gateway.teacher.chats()
    spec = gateway.deps.routes.get(TASK).spec
    assert sent.body["messages"][0] == {"role": "system", "content": spec.instructions}
    assert "response_format" not in sent.body
    assert not gateway.student.chats()


def test_a_clients_own_system_prompt_passes_unchanged_and_the_response_says_so(gateway):
    messages = [{"role": "system", "content": "Answer in French."}, *user("hello")]
    raw = gateway.client().chat.completions.with_raw_response.create(model=TASK, messages=messages)
    assert raw.headers["x-distillery-prompt"] == "client"
    (sent,) = gateway.student.chats()
    assert sent.body["messages"] == messages
    assert "response_format" not in sent.body
    wait_for(lambda: gateway.traces())
    assert gateway.traces()[0].prompt_source == "client"


def test_missing_or_invalid_keys_get_401_and_out_of_scope_403(gateway):
    with pytest.raises(openai.AuthenticationError):
        gateway.client("dk-not-a-key").chat.completions.create(model=TASK, messages=user("x"))
    response = httpx2.post(f"{gateway.url}/v1/chat/completions", json={"model": TASK})
    assert response.status_code == 401
    with pytest.raises(openai.PermissionDeniedError):
        gateway.client("other").chat.completions.create(model=TASK, messages=user("x"))
    with pytest.raises(openai.NotFoundError):
        gateway.client("admin").chat.completions.create(model="no-such-task", messages=user("x"))
    assert not gateway.student.chats()
    assert [m.id for m in gateway.client("toy").models.list()] == [TASK]
    assert [m.id for m in gateway.client("admin").models.list()] == ["other-task", TASK]


def test_a_key_over_its_budget_gets_429_with_retry_after(make_gateway):
    gateway = make_gateway(rpm=60, burst=2)
    client = gateway.client("toy")
    for _ in range(2):
        client.chat.completions.create(model=TASK, messages=user("x"))
    with pytest.raises(openai.RateLimitError) as refused:
        client.chat.completions.create(model=TASK, messages=user("x"))
    assert int(refused.value.response.headers["retry-after"]) >= 1
    # Counted per key: another key is not affected.
    gateway.client("all").chat.completions.create(model=TASK, messages=user("x"))
    assert len(gateway.student.chats()) == 3


def test_a_body_over_the_limit_is_refused_before_it_reaches_anyone(make_gateway):
    gateway = make_gateway(max_body_bytes=4096)
    headers = {"Authorization": f"Bearer {gateway.keys['toy']}"}
    big = {"model": TASK, "messages": user("x" * 5000)}
    response = httpx2.post(f"{gateway.url}/v1/chat/completions", json=big, headers=headers)
    assert response.status_code == 413

    def chunked():
        yield json.dumps(big).encode()

    response = httpx2.post(f"{gateway.url}/v1/chat/completions", content=chunked(), headers=headers)
    assert response.status_code == 413
    assert not gateway.student.chats()


def test_a_clients_own_grammar_is_refused_before_it_reaches_anyone(make_gateway):
    gateway = make_gateway()
    # llama.cpp's server process dies on a grammar it cannot parse: one request must not do that.
    headers = {"Authorization": f"Bearer {gateway.keys['toy']}"}
    body = {"model": TASK, "messages": user("hi"), "grammar": "root ::= ("}
    for path in ["chat/completions", "completions"]:
        sent = body if path.startswith("chat") else {"model": TASK, "prompt": "hi", "grammar": "x"}
        response = httpx2.post(f"{gateway.url}/v1/{path}", json=sent, headers=headers)
        assert response.status_code == 400 and "grammar" in response.text
    assert not gateway.student.chats()


def test_an_upstream_past_its_deadline_is_a_504_and_traced_as_an_error(make_gateway):
    gateway = make_gateway(upstream_timeout_s=0.2)
    gateway.student.delay_s = 2.0
    with pytest.raises(openai.APIStatusError) as failed:
        gateway.client().chat.completions.create(model=TASK, messages=user("x"))
    assert failed.value.status_code == 504
    wait_for(lambda: gateway.traces())
    assert "timed out" in gateway.traces()[0].error


def test_upstream_errors_are_passed_through_before_a_stream_starts(gateway):
    gateway.student.fail_next(1, status=503)
    with pytest.raises(openai.InternalServerError):
        gateway.client().chat.completions.create(model=TASK, messages=user("x"), stream=True)


def test_a_bus_that_never_answers_neither_slows_nor_fails_requests(make_gateway):
    gateway = make_gateway(trace_buffer=3)
    gateway.published.stall = True
    client = gateway.client()
    for _ in range(10):
        assert client.chat.completions.create(model=TASK, messages=user("x")).choices
    metrics = httpx2.get(f"{gateway.url}/metrics").text
    dropped = [
        line
        for line in metrics.splitlines()
        if line.startswith('distillery_gateway_traces_dropped_total{reason="overflow"}')
    ]
    # The drainer holds one event, the buffer three: the other six are counted as dropped.
    assert dropped and float(dropped[0].split()[-1]) >= 6


def test_feedback_is_published(gateway):
    reply = gateway.client().chat.completions.with_raw_response.create(
        model=TASK, messages=user("x")
    )
    request_id = reply.headers["x-request-id"]
    headers = {"Authorization": f"Bearer {gateway.keys['toy']}"}
    body = {"model": TASK, "request_id": request_id, "rating": -1, "correction": "{}"}
    response = httpx2.post(f"{gateway.url}/v1/feedback", json=body, headers=headers)
    assert response.status_code == 202
    wait_for(lambda: gateway.published.of(FeedbackRecorded))
    (feedback,) = gateway.published.of(FeedbackRecorded)
    assert (str(feedback.request_id), feedback.rating, feedback.task_name) == (request_id, -1, TASK)
    empty = {"model": TASK, "request_id": request_id}
    assert httpx2.post(f"{gateway.url}/v1/feedback", json=empty, headers=headers).status_code == 400
    other = {**body, "model": "other-task"}
    assert httpx2.post(f"{gateway.url}/v1/feedback", json=other, headers=headers).status_code == 403


def test_shadow_answers_are_recorded_and_never_returned(make_gateway):
    gateway = make_gateway(stage="shadow")
    gateway.student.answer = lambda body: "SHADOW ONLY"
    for _ in range(3):
        reply = gateway.client().chat.completions.create(model=TASK, messages=user("x"))
        assert reply.choices[0].message.content == FREE_TEXT  # the live teacher's
    wait_for(lambda: len(gateway.traces()) == 6)
    arms = sorted(t.arm for t in gateway.traces())
    assert arms == ["shadow"] * 3 + ["teacher"] * 3
    shadow = [t for t in gateway.traces() if t.arm == "shadow"]
    assert {t.completion for t in shadow} == {"SHADOW ONLY"}
    assert {t.stage for t in shadow} == {"shadow"}
    # The shadow got the student's prompt, not the teacher's: it is measured as it would serve.
    spec = gateway.deps.routes.get(TASK).spec
    assert gateway.student.chats()[0].body["messages"][0]["content"] == spec.student_prompt


def test_shadow_copies_beyond_a_few_in_flight_are_skipped_not_queued(make_gateway):
    """A candidate slower than live traffic: at most `shadows_per_server` copies wait on it;
    the rest are skipped (counted), so none times out in its queue and counts as its error."""
    gateway = make_gateway(stage="shadow", shadows_per_server=2, burst=1000)
    gateway.student.delay_s = 1.0
    for _ in range(5):  # the live teacher answers each at once
        gateway.client().chat.completions.create(model=TASK, messages=user("x"))
    wait_for(lambda: len(gateway.traces()) == 7, timeout=10)
    arms = sorted(t.arm for t in gateway.traces())
    assert arms == ["shadow"] * 2 + ["teacher"] * 5
    assert all(t.error is None for t in gateway.traces())
    # Once those two are answered, copies are sent again.
    gateway.client().chat.completions.create(model=TASK, messages=user("x"))
    wait_for(lambda: len(gateway.traces()) == 9, timeout=10)


def test_ab_is_sticky_per_key(make_gateway):
    gateway = make_gateway(stage="ab", share=0.5, burst=1000)
    client = gateway.client()
    routes = set()
    for _ in range(6):
        raw = client.chat.completions.with_raw_response.create(model=TASK, messages=user("x"))
        routes.add(raw.headers["x-distillery-route"])
    assert len(routes) == 1
    # A named end user is sticky on their own, whichever key their app uses.
    seen = {}
    for user_id in [f"user-{i}" for i in range(20)]:
        raw = client.chat.completions.with_raw_response.create(
            model=TASK, messages=user("x"), extra_headers={"X-Distillery-User": user_id}
        )
        again = client.chat.completions.with_raw_response.create(
            model=TASK, messages=user("x"), extra_headers={"X-Distillery-User": user_id}
        )
        assert raw.headers["x-distillery-route"] == again.headers["x-distillery-route"]
        seen[user_id] = raw.headers["x-distillery-route"]
    assert set(seen.values()) == {"student", "teacher"}


def test_a_client_that_goes_away_mid_stream_closes_the_upstream_stream(gateway):
    gateway.student.delay_s = 0.2  # 4 characters per chunk, 0.2 s apart: ~2 s in all
    headers = {"Authorization": f"Bearer {gateway.keys['toy']}"}
    body = {"model": TASK, "messages": user("x"), "stream": True}
    with (
        httpx2.Client(timeout=10) as client,
        client.stream(
            "POST", f"{gateway.url}/v1/chat/completions", json=body, headers=headers
        ) as r,
    ):
        assert r.status_code == 200
        next(r.iter_lines())  # the first chunk arrived; now hang up
    wait_for(lambda: gateway.student.cancelled == 1)
    wait_for(lambda: gateway.traces())
    (trace,) = gateway.traces()
    assert trace.error == "client disconnected"
    assert SCHEMA_ANSWER.startswith(trace.completion) and trace.completion != SCHEMA_ANSWER
