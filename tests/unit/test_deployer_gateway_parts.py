"""The gateway's pure parts: keys, limits, arm choice, prompt rendering."""

from __future__ import annotations

import dataclasses
from uuid import uuid4

import pytest

from deployer.domain import Backend, Route, bucket, choose
from deployer.keys import KeyRing, digest, issue
from deployer.limits import RateLimiter
from deployer.prompts import render
from shared.models.decoding import response_format
from shared.models.gbnf import schema_gbnf
from shared.tasks import parse_spec
from tests.fixtures.teacher_server import toy_spec

SPEC = parse_spec(toy_spec("http://127.0.0.1:9/v1"))
TEACHER = Backend("teacher", "http://t/v1", "big", "big")
STUDENT = Backend("student", "http://s/v1", "adapter", "f" * 64, uuid4())


def test_a_key_is_stored_only_as_its_hash():
    secret, record = issue("k1", ["t"])
    assert secret not in repr(dataclasses.asdict(record))
    assert record.key_hash == digest(secret) and len(record.key_hash) == 64
    ring = KeyRing([record])
    assert ring.authenticate(f"Bearer {secret}") == record
    assert ring.authenticate(f"bearer {secret}") == record
    for bad in [None, "", secret, f"Basic {secret}", f"Bearer {secret}x", "Bearer dk-"]:
        assert ring.authenticate(bad) is None
    ring.replace([])  # revoked: gone at the next refresh
    assert ring.authenticate(f"Bearer {secret}") is None


def test_scopes():
    _, scoped = issue("k", ["a"])
    _, everything = issue("k", ["*"])
    _, admin = issue("k", admin=True)
    assert scoped.allows("a") and not scoped.allows("b")
    assert everything.allows("b") and admin.allows("b")


def test_token_bucket_refuses_past_the_burst_and_says_when_to_retry():
    now = [0.0]
    limiter = RateLimiter(burst=2, clock=lambda: now[0])
    assert [limiter.check("k", 60).allowed for _ in range(3)] == [True, True, False]
    refused = limiter.check("k", 60)
    assert refused.retry_after_s == 1
    assert limiter.check("other", 60).allowed  # per key
    now[0] = 1.0
    assert limiter.check("k", 60).allowed
    assert not limiter.check("k", 60).allowed
    slow = RateLimiter(burst=1, clock=lambda: now[0])
    assert slow.check("k", 2).allowed
    assert slow.check("k", 2).retry_after_s == 30  # 2 a minute: the next in 30 s


def test_arm_choice_by_stage():
    route = Route("t", SPEC, TEACHER, STUDENT)
    assert choose(route, "k").serve == TEACHER  # a candidate without a stage takes nothing
    shadow = choose(dataclasses.replace(route, stage="shadow"), "k")
    assert (shadow.serve, shadow.shadow) == (TEACHER, STUDENT)
    assert choose(dataclasses.replace(route, stage="full"), "k").serve == STUDENT
    rolled_back = choose(dataclasses.replace(route, stage="rolled_back", share=1.0), "k")
    assert (rolled_back.serve, rolled_back.shadow) == (TEACHER, None)


@pytest.mark.parametrize("share", [0.1, 0.5])
def test_ab_split_holds_within_tolerance_and_is_sticky(share: float):
    route = Route("t", SPEC, TEACHER, STUDENT, "ab", share)
    callers = [f"key-{i}" for i in range(20_000)]
    on_candidate = {c for c in callers if choose(route, c).arm == "candidate"}
    # Binomial: 20k callers put the share within 1.5 points at far beyond 4 sigma.
    assert abs(len(on_candidate) / len(callers) - share) < 0.015
    assert all(choose(route, c).arm == "candidate" for c in on_candidate)  # sticky
    wider = Route("t", SPEC, TEACHER, STUDENT, "ab", share + 0.3)
    # Raising the share moves callers onto the candidate, never back.
    assert all(choose(wider, c).arm == "candidate" for c in on_candidate)


def test_buckets_differ_per_task():
    assert bucket("a", "key") != bucket("b", "key")
    assert bucket("a", "key") == bucket("a", "key")


def test_student_rendering_is_the_evaluated_prompt_and_schema():
    body = {"model": "toy-triage", "messages": [{"role": "user", "content": "hi"}]}
    rendered = render(body, SPEC, STUDENT)
    assert rendered.source == "task"
    assert rendered.body["model"] == "adapter"
    assert rendered.body["messages"][0] == {"role": "system", "content": SPEC.student_prompt}
    assert rendered.body["response_format"] == response_format(SPEC.output_schema)
    assert rendered.body["temperature"] == 0.0
    assert body["messages"] == [{"role": "user", "content": "hi"}]  # the client's is untouched
    chosen = render(
        {**body, "temperature": 0.7, "response_format": {"type": "text"}}, SPEC, STUDENT
    )
    assert chosen.body["temperature"] == 0.7
    assert chosen.body["response_format"] == {"type": "text"}


def test_llama_cpp_gets_the_measured_grammar_and_plain_greedy():
    body = {"model": "toy-triage", "messages": [{"role": "user", "content": "hi"}]}
    llama = dataclasses.replace(STUDENT, engine="llama.cpp")
    rendered = render(body, SPEC, llama).body
    # The GBNF of the evaluator's own grammar; llama.cpp's json_object admits other whitespace.
    assert rendered["grammar"] == schema_gbnf(SPEC.output_schema)
    assert "response_format" not in rendered
    assert rendered["temperature"] == 0.0 and rendered["repeat_penalty"] == 1.0
    own = render({**body, "response_format": {"type": "text"}}, SPEC, llama).body
    assert "grammar" not in own and own["response_format"] == {"type": "text"}


def test_teacher_rendering_and_client_prompts():
    body = {"model": "toy-triage", "messages": [{"role": "user", "content": "hi"}]}
    teacher = render(body, SPEC, TEACHER)
    assert teacher.body["messages"][0]["content"] == SPEC.instructions
    assert "response_format" not in teacher.body and "temperature" not in teacher.body
    own = [{"role": "system", "content": "mine"}, {"role": "user", "content": "hi"}]
    passed = render({**body, "messages": own}, SPEC, STUDENT)
    assert passed.source == "client" and passed.body["messages"] == own
    assert "response_format" not in passed.body


def test_feedback_names_its_key_and_a_user_only_under_that_key():
    from deployer.gateway import feedback_event

    body = {"model": "toy", "request_id": "6f1c2a7e-3b1d-4c55-9a51-2f7c8f0e1d2a", "rating": 1}
    named = feedback_event(body, key_id="app-1", user_id="ann")
    assert (named.key_id, named.user_id) == ("app-1", "app-1/ann")
    # No header: the key stands for its user; no key can name another key's users.
    assert feedback_event(body, key_id="app-2").user_id == "app-2"
    assert feedback_event(body, key_id="app-2", user_id="app-1/ann").user_id == "app-2/app-1/ann"
