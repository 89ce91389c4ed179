"""shared.llm against real OpenAI-compatible HTTP servers on loopback (the scripted teacher of
tests/fixtures/teacher_server.py): residency, redirects, Retry-After, the gate, the ledger."""

from __future__ import annotations

import asyncio
import re
import time
from collections.abc import Iterator
from email.utils import formatdate

import pytest
from prometheus_client import REGISTRY
from pydantic import ValidationError

from shared.bus import PermanentError, TransientError
from shared.llm import (
    EndpointUnusable,
    Gate,
    LLMClient,
    RedirectRefused,
    RequestRefused,
    ResidencyError,
    RetriesExhausted,
    RetryPolicy,
    normalise_host,
    operator_list,
    parse_entry,
    parse_host_list,
    refusal,
    retry_after_s,
    spec_list,
)
from shared.settings import PlatformSettings
from shared.tasks.spec import Teacher
from tests.fixtures.teacher_server import ScriptedTeacher, running

FAST = RetryPolicy(max_attempts=4, base_s=0.01, cap_s=0.05)
ASK = [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "hello there"}]


@pytest.fixture
def server() -> Iterator[ScriptedTeacher]:
    with running() as scripted:
        yield scripted


def llm(url: str, *, operator: list[str] | None = None, **teacher: object) -> LLMClient:
    spec = Teacher(base_url=url, model=str(teacher.pop("model", "scripted")), **teacher)
    return LLMClient(
        spec,
        spec_hosts=["127.0.0.1", "127.0.0.2"],
        operator_hosts=operator or [],
        retry=FAST,
        caller="test",
    )


# --- host normalisation and the allow-lists (pure) --------------------------------------------


@pytest.mark.parametrize(
    ("raw", "normal"),
    [
        ("LLM.EU.Internal", "llm.eu.internal"),
        ("llm.eu.internal.", "llm.eu.internal"),
        ("Bücher.Example.", "xn--bcher-kva.example"),
        ("xn--bcher-kva.example", "xn--bcher-kva.example"),
        ("[::1]", "::1"),
        ("0:0:0:0:0:0:0:1", "::1"),
    ],
)
def test_hosts_are_normalised(raw, normal):
    assert normalise_host(raw) == normal


@pytest.mark.parametrize(
    ("url", "spec", "operator", "allowed"),
    [
        ("https://LLM.eu.internal./v1", ["llm.eu.internal"], [], True),
        ("http://bücher.example/v1", ["xn--bcher-kva.example"], [], True),
        ("http://xn--bcher-kva.example/v1", ["Bücher.Example."], [], True),
        ("https://llm.eu.internal/v1", ["llm.eu.internal:443"], [], True),  # default port
        ("https://llm.eu.internal:443/v1", ["llm.eu.internal"], ["llm.eu.internal:443"], True),
        ("https://llm.eu.internal:8443/v1", ["llm.eu.internal:443"], [], False),
        ("http://llm.eu.internal/v1", ["llm.eu.internal:443"], [], False),  # port 80
        ("http://[::1]:8000/v1", ["[::1]:8000"], [], True),
        ("http://llm.eu.internal.evil.example/v1", ["llm.eu.internal"], [], False),
        ("https://api.example.com/v1", ["api.example.com"], ["llm.eu.internal"], False),
        ("https://api.example.com/v1", ["api.example.com"], [], True),  # empty: no restriction
        ("https://api.example.com/v1", [], ["api.example.com"], False),  # the spec's: required
        ("http://user:pw@llm.eu.internal/v1", ["llm.eu.internal"], [], False),
        ("http://evil.example\\@llm.eu.internal/v1", ["llm.eu.internal"], [], False),
        ("ftp://llm.eu.internal/v1", ["llm.eu.internal"], [], False),
    ],
)
def test_both_lists_must_allow_the_normalised_host_and_port(url, spec, operator, allowed):
    problem = refusal(url, (spec_list(spec), operator_list(operator)))
    assert (problem is None) is allowed, problem
    if problem:
        assert "no request was sent" in problem and "pw" not in problem


def test_a_refusal_names_the_host_and_both_lists():
    problem = refusal(
        "https://API.example.com/v1",
        (spec_list(["api.example.com"]), operator_list(["llm.eu.internal", "10.0.0.5:8000"])),
    )
    assert problem == (
        "teacher host 'api.example.com' (port 443) is outside the residency allow-list: "
        "residency.allowed_teacher_hosts ['api.example.com'] allows it; "
        "DISTILLERY_ALLOWED_TEACHER_HOSTS ['10.0.0.5:8000', 'llm.eu.internal'] does not allow "
        "it; no request was sent"
    )


@pytest.mark.parametrize(
    "entry", ["", "https://llm.eu", "*.example.com", "llm.eu/v1", "u@llm.eu", "h:0", "h:70000"]
)
def test_entries_are_hosts_or_host_ports_only(entry):
    with pytest.raises(ValueError, match="allow-list entry"):
        parse_entry(entry)


def test_the_platform_setting_is_comma_separated_and_checked_at_start_up(monkeypatch):
    monkeypatch.setenv("DISTILLERY_ALLOWED_TEACHER_HOSTS", " llm.eu.internal, 10.0.0.5:8000 ,")
    assert PlatformSettings().allowed_teacher_hosts == ["llm.eu.internal", "10.0.0.5:8000"]
    monkeypatch.setenv("DISTILLERY_ALLOWED_TEACHER_HOSTS", '["llm.eu.internal"]')
    assert PlatformSettings().allowed_teacher_hosts == ["llm.eu.internal"]
    monkeypatch.setenv("DISTILLERY_ALLOWED_TEACHER_HOSTS", "https://llm.eu.internal")
    with pytest.raises(ValidationError, match="expected host or host:port"):
        PlatformSettings()
    monkeypatch.delenv("DISTILLERY_ALLOWED_TEACHER_HOSTS")
    assert PlatformSettings().allowed_teacher_hosts == [] == parse_host_list(None)


def test_retry_after_forms():
    assert retry_after_s({"retry-after": "3"}) == 3.0
    assert retry_after_s({"retry-after-ms": "250", "retry-after": "9"}) == 0.25
    now = time.time()
    assert retry_after_s({"retry-after": formatdate(now + 20, usegmt=True)}, now) == (
        pytest.approx(20, abs=1)
    )
    assert retry_after_s({"retry-after": "soon"}) is None and retry_after_s({}) is None
    assert RetryPolicy(cap_s=2).delay(1, 3600) == 2  # a server cannot park a job for an hour


# --- against real servers ---------------------------------------------------------------------


async def test_the_operators_list_refuses_a_host_the_spec_allows_before_any_request(server):
    with pytest.raises(ResidencyError) as refused:
        llm(server.url, operator=["llm.eu.internal"])
    assert isinstance(refused.value, PermanentError)  # the stage ends the cycle
    reason = str(refused.value)
    assert f"'127.0.0.1' (port {server.port})" in reason
    assert "residency.allowed_teacher_hosts ['127.0.0.1', '127.0.0.2'] allows it" in reason
    assert "DISTILLERY_ALLOWED_TEACHER_HOSTS ['llm.eu.internal'] does not allow it" in reason
    # A port-scoped entry: another port on the same host is another endpoint.
    with pytest.raises(ResidencyError, match=re.escape(f"127.0.0.1:{server.port + 1}")):
        llm(server.url, operator=[f"127.0.0.1:{server.port + 1}"])
    assert server.requests == []

    async with llm(server.url, operator=[f"127.0.0.1:{server.port}"]) as client:
        reply = await client.chat(ASK, max_tokens=8)
    assert reply.text and len(server.requests) == 1


async def test_a_redirect_to_another_host_is_refused_and_not_followed(server):
    with running(host="127.0.0.2") as other:
        # Even to a host both lists allow: the body is task data, and 3xx is not followed.
        server.fail_next(1, status=307, location=f"{other.url}/chat/completions")
        async with llm(server.url) as client:
            with pytest.raises(RedirectRefused) as refused:
                await client.chat(ASK)
        assert other.requests == []
    assert isinstance(refused.value, EndpointUnusable) and isinstance(refused.value, PermanentError)
    assert refused.value.location_host == f"127.0.0.2:{other.port}"
    assert f"127.0.0.2:{other.port}" in str(refused.value) and "HTTP 307" in str(refused.value)
    assert len(server.requests) == 1 and client.ledger.retries == 0


async def test_every_outgoing_request_is_checked_again_before_it_is_sent(server):
    with running(host="127.0.0.2") as other:
        async with LLMClient(
            Teacher(base_url=server.url, model="scripted"),
            spec_hosts=["127.0.0.1"],
            operator_hosts=[],
        ) as client:
            # A later code path that points the SDK elsewhere (here: with_options, which keeps
            # our HTTP client and its hook) still cannot send task data past the lists.
            moved = client._sdk.with_options(base_url=other.url)
            with pytest.raises(ResidencyError, match=r"'127\.0\.0\.2'"):
                await moved.chat.completions.create(model="scripted", messages=ASK)
        assert other.requests == [] and server.requests == []


async def test_retry_after_is_honoured_on_429_then_the_answer_comes(server):
    server.fail_next(1, status=429, retry_after="1")
    policy = RetryPolicy(max_attempts=3, base_s=0.001, cap_s=5)
    async with LLMClient(
        Teacher(base_url=server.url, model="scripted"),
        spec_hosts=["127.0.0.1"],
        operator_hosts=["127.0.0.1"],
        retry=policy,
    ) as client:
        began = time.monotonic()
        reply = await client.chat(ASK)
        waited = time.monotonic() - began
    # Our own backoff would have waited about a millisecond: only Retry-After explains this.
    assert waited >= 0.95
    assert reply.text and reply.attempts == 2
    assert (client.ledger.requests, client.ledger.retries) == (2, 1)
    assert server.counts() == {"fault": 1, "answer": 1}


async def test_outages_are_retried_then_transient_and_refusals_are_not_retried(server):
    server.fail_next(4, status=503)
    async with llm(server.url) as client:
        with pytest.raises(RetriesExhausted, match="after 4 attempts: HTTP 503") as exhausted:
            await client.chat(ASK)
        assert isinstance(exhausted.value, TransientError) and len(server.requests) == 4
        server.fail_next(1, status=400)
        with pytest.raises(RequestRefused, match="HTTP 400"):
            await client.chat(ASK)
        server.fail_next(1, status=401)
        with pytest.raises(EndpointUnusable, match="HTTP 401"):
            await client.chat(ASK)
    assert len(server.requests) == 6 and client.ledger.retries == 3


async def test_one_gate_per_endpoint_and_model_across_clients(server):
    server.stall_next(8, seconds=0.2)
    first = llm(server.url, max_concurrency=2)
    second = llm(server.url, max_concurrency=2)  # another job, same endpoint: same gate
    async with first, second:
        await asyncio.gather(*(c.chat(ASK) for c in [first, second] * 4))
        assert server.peak_in_flight == 2

        server.peak_in_flight = 0
        server.stall_next(4, seconds=0.2)
        other_model = llm(server.url, model="another", max_concurrency=2)
        async with other_model:
            await asyncio.gather(
                first.chat(ASK), first.chat(ASK), other_model.chat(ASK), other_model.chat(ASK)
            )
        assert server.peak_in_flight == 4  # another model is another gate


async def test_a_gate_holds_each_callers_own_limit():
    gate, events = Gate(), []

    async def hold(limit: int, name: str, seconds: float) -> None:
        async with gate.slot(limit):
            events.append((name, gate.in_flight))
            await asyncio.sleep(seconds)

    wide = [asyncio.create_task(hold(3, f"wide{i}", 0.1)) for i in range(3)]
    await asyncio.sleep(0.01)
    await asyncio.gather(hold(1, "narrow", 0), *wide)
    assert events[-1] == ("narrow", 1)  # it waited until nothing else was in flight
    assert max(n for _, n in events) == 3


async def test_the_ledger_counts_requests_retries_tokens_and_cost(server):
    def cost() -> float:
        return REGISTRY.get_sample_value("distillery_llm_cost_usd_total", {"caller": "test"}) or 0

    spent_before = cost()
    server.fail_next(1, status=502)
    async with llm(
        server.url, price_per_1k_prompt_tokens=2.0, price_per_1k_completion_tokens=4.0
    ) as client:
        first = await client.chat(ASK)
        second = await client.chat(ASK, temperature=0)
        client.cache_hit()
    ledger = client.ledger
    prompt = first.prompt_tokens + second.prompt_tokens
    completion = first.completion_tokens + second.completion_tokens
    assert prompt == 2 * 4 and completion > 0  # the scripted server counts words
    assert (ledger.requests, ledger.retries, ledger.cache_hits) == (3, 1, 1)
    assert (ledger.prompt_tokens, ledger.completion_tokens) == (prompt, completion)
    assert ledger.cost_usd == pytest.approx((prompt * 2.0 + completion * 4.0) / 1000)
    assert cost() - spent_before == pytest.approx(ledger.cost_usd)
    assert ledger.as_log()["usage"] == {"prompt": prompt, "completion": completion}
