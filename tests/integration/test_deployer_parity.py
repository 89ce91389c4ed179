"""Serving parity against a scripted loopback server: the same answers pass, changed ones
block with the diff. (The real-engine case is in test_deployer_llamacpp.py.)"""

from __future__ import annotations

import json
from uuid import uuid4

from deployer.domain import Backend
from deployer.parity import GoldenRow, Mismatch, ParityResult, replay, same_reply, spread
from deployer.upstream import Upstream
from shared.tasks import parse_spec
from tests.fixtures.openai_upstream import loopback_upstream
from tests.fixtures.teacher_server import toy_pool, toy_spec

POOL = toy_pool(per_case=5)
ROWS = [GoldenRow(f"r{i}", row["input"]) for i, row in enumerate(POOL)]
RECORDED = {f"r{i}": row["output"] for i, row in enumerate(POOL)}
OUTPUT_OF = {row["input"]: row["output"] for row in POOL}
SPEC = parse_spec(toy_spec("http://127.0.0.1:9/v1"))


def user_text(body) -> str:
    return next(m["content"] for m in body["messages"] if m["role"] == "user")


def tampered(body) -> str:
    answer = json.loads(OUTPUT_OF[user_text(body)])
    if answer["label"] == "billing":  # the tampered adapter sends billing to outage
        answer["label"] = "outage"
    return json.dumps(answer)


async def check(answer) -> tuple[ParityResult, list]:
    with loopback_upstream(name="candidate", answer=answer) as server:
        backend = Backend("student", server.url, "candidate", "c" * 64, uuid4(), None, "vllm")
        upstream = Upstream(timeout_s=5)
        result = await replay(upstream, SPEC, backend, ROWS, RECORDED, tolerance=0.02)
        await upstream.aclose()
        return result, server.chats()


async def test_the_tested_answers_pass():
    # Spaced differently, the same JSON values: the same answers.
    result, sent = await check(lambda body: OUTPUT_OF[user_text(body)].replace(", ", " ,  "))
    assert result.passed and result.checked == len(ROWS) and not result.mismatches
    # Replayed as the gateway serves: the student prompt and the task's schema.
    assert {s.body["messages"][0]["content"] for s in sent} == {SPEC.student_prompt}
    assert all(s.body["response_format"]["type"] == "json_schema" for s in sent)


async def test_a_tampered_candidate_is_blocked_with_the_diff():
    result, _ = await check(tampered)
    assert not result.passed
    billing = [r.id for r in ROWS if '"billing"' in RECORDED[r.id]]
    assert [m.row_id for m in result.mismatches] == billing
    diff = result.diff(limit=2)
    assert diff.startswith(f"{len(billing)} of {len(ROWS)} replayed golden rows differ")
    assert '"outage"' in diff and f"... and {len(billing) - 2} more" in diff


def test_tolerance_comparison_and_sampling():
    one = (Mismatch("a", "x", "y"),)
    assert ParityResult(100, one, 0.02).passed
    assert not ParityResult(10, one, 0.02).passed
    assert not ParityResult(0, (), 1.0).passed  # nothing replayed proves nothing
    assert same_reply('{"a": 1, "b": [1, 2]}', '{ "b":[1,2], "a":1 }')
    assert not same_reply('{"a": 1}', '{"a": 2}')
    assert same_reply("  plain  ", "plain") and not same_reply("plain", "plane")
    picked = spread(ROWS, 5)
    assert len(picked) == 5 and picked == spread(ROWS, 5) and picked[0] == ROWS[0]
