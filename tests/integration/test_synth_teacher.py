"""The teacher adapter against real HTTP servers: the scripted one for faults on demand, and
`transformers serve` with the tiny random model for the real thing (whose answers are garbage)."""

from __future__ import annotations

import asyncio
import json
import uuid
from collections.abc import Iterator

import pytest
from sqlalchemy import func, select

from shared.artifacts import AsyncArtifactStore, LocalArtifactStore
from shared.bus import TransientError
from shared.db import Database
from shared.events.catalog import CycleFailed
from shared.tasks import parse_spec
from synth_data import prompts
from synth_data.domain import Planned
from synth_data.models import SynthResponse
from synth_data.repository import DbResponseCache, get_run
from synth_data.settings import SynthDataSettings
from synth_data.synthesis import Synthesiser
from synth_data.teacher import (
    ResidencyViolation,
    RetryPolicy,
    TeacherClient,
    TeacherRefused,
    TeacherUnusable,
)
from tests.fixtures.teacher_server import (
    ScriptedTeacher,
    ServedModel,
    running,
    toy_spec,
    transformers_serving,
)
from tests.integration.test_synth_service import cycle, deliver, deps, put_spec, staged

FAST = RetryPolicy(max_attempts=4, base_s=0.01, cap_s=0.05)
PARAMS = prompts.params(0.0, 64)


@pytest.fixture
def teacher() -> Iterator[ScriptedTeacher]:
    with running() as scripted:
        yield scripted


@pytest.fixture(scope="session")
def served(tiny_model_dir, tmp_path_factory) -> Iterator[ServedModel]:
    with transformers_serving(tiny_model_dir, tmp_path_factory.mktemp("teacher")) as model:
        yield model


@pytest.fixture
def store(tmp_path) -> AsyncArtifactStore:
    return AsyncArtifactStore(LocalArtifactStore(tmp_path / "artifacts"))


def client(db: Database, url: str, retry: RetryPolicy = FAST, **teacher: object) -> TeacherClient:
    spec = parse_spec(toy_spec(url, teacher=teacher))
    cache = DbResponseCache(db, cycle_id=str(uuid.uuid4()), iteration=1)
    return TeacherClient(
        spec.teacher, cache, allowed_hosts=["127.0.0.1"], operator_hosts=[], retry=retry
    )


def question(teacher: ScriptedTeacher, n: int = 0) -> tuple[list[dict[str, str]], str]:
    row = [r for r in teacher.pool if not r["negative"]][n]
    spec = parse_spec(toy_spec(teacher.url))
    return prompts.answer_messages(spec, row["input"]), row["output"]


async def test_429_and_5xx_are_retried_then_the_answer_is_cached(sqlite_db, teacher):
    teacher.fail_next(2, status=429, retry_after="0")
    teacher.fail_next(1, status=502)
    messages, right = question(teacher)

    async with client(sqlite_db, teacher.url) as tc:
        reply = await tc.complete(messages, purpose="output", params=PARAMS, sample=0)
        again = await tc.complete(messages, purpose="output", params=PARAMS, sample=0)
        other = await tc.complete(messages, purpose="output", params=PARAMS, sample=1)

    assert reply.text == right and not reply.cached and reply.prompt_tokens > 0
    assert again == reply.__class__(right, reply.prompt_tokens, reply.completion_tokens, True)
    assert not other.cached  # another sample index is another request
    assert (tc.traffic.requests, tc.traffic.retries, tc.traffic.cache_hits) == (5, 3, 1)
    assert teacher.counts() == {"fault": 3, "answer": 2}


async def test_a_timeout_is_retried(sqlite_db, teacher):
    teacher.stall_next(1, seconds=3.0)
    messages, right = question(teacher)
    async with client(sqlite_db, teacher.url, timeout_s=1.0) as tc:
        reply = await tc.complete(messages, purpose="output", params=PARAMS, sample=0)
    assert reply.text == right and tc.traffic.retries == 1


async def test_retries_are_finite_then_the_job_is_retried_later(sqlite_db, teacher):
    teacher.fail_next(10, status=500)
    messages, _ = question(teacher)
    async with client(sqlite_db, teacher.url) as tc:
        exhausted = r"127\.0\.0\.1:\d+ still failing after 4 attempts"
        with pytest.raises(TransientError, match=exhausted):
            await tc.complete(messages, purpose="output", params=PARAMS, sample=0)
    assert teacher.counts() == {"fault": 4}
    async with sqlite_db.uow() as uow:
        assert await uow.session.scalar(select(func.count()).select_from(SynthResponse)) == 0


@pytest.mark.parametrize(
    ("status", "headers", "error"),
    [
        (400, {}, TeacherRefused),
        (401, {}, TeacherUnusable),
        (404, {}, TeacherUnusable),
        (307, {"location": "http://elsewhere.example/v1/chat/completions"}, TeacherUnusable),
    ],
)
async def test_client_errors_are_not_retried(sqlite_db, teacher, status, headers, error):
    teacher.fail_next(1, status=status, **headers)
    messages, _ = question(teacher)
    async with client(sqlite_db, teacher.url) as tc:
        with pytest.raises(error, match=f"HTTP {status}"):
            await tc.complete(messages, purpose="output", params=PARAMS, sample=0)
    assert len(teacher.requests) == 1  # and a redirect was not followed anywhere


async def test_concurrency_is_bounded_by_the_spec(sqlite_db, teacher):
    teacher.stall_next(8, seconds=0.2)
    messages, _ = question(teacher)
    async with client(sqlite_db, teacher.url, max_concurrency=2) as tc:
        await asyncio.gather(
            *(tc.complete(messages, purpose="output", params=PARAMS, sample=i) for i in range(8))
        )
    assert teacher.peak_in_flight == 2 and len(teacher.requests) == 8


async def test_residency_is_checked_by_the_client_itself(sqlite_db, teacher):
    spec = parse_spec(toy_spec(teacher.url))
    cache = DbResponseCache(sqlite_db, cycle_id=str(uuid.uuid4()), iteration=1)
    with pytest.raises(ResidencyViolation, match=r"'127\.0\.0\.1'.*\['llm\.eu\.internal'\]"):
        TeacherClient(spec.teacher, cache, allowed_hosts=["llm.eu.internal"], operator_hosts=[])
    with pytest.raises(ResidencyViolation, match="DISTILLERY_ALLOWED_TEACHER_HOSTS"):
        TeacherClient(
            spec.teacher, cache, allowed_hosts=["127.0.0.1"], operator_hosts=["llm.eu.internal"]
        )
    # The deprecated per-service list still restricts, on top of the platform's.
    with pytest.raises(ResidencyViolation, match=r"SYNTH_DATA_ALLOWED_TEACHER_HOSTS \['llm"):
        TeacherClient(
            spec.teacher,
            cache,
            allowed_hosts=["127.0.0.1"],
            operator_hosts=["127.0.0.1"],
            synth_hosts=["llm.eu.internal"],
        )
    assert teacher.requests == []


async def test_the_platform_list_reaches_the_stage_and_refuses_before_any_request(
    sqlite_db, store, teacher
):
    ref = await put_spec(sqlite_db, store, toy_spec(teacher.url))  # the spec allows 127.0.0.1
    d = deps(sqlite_db, store)
    d.operator_hosts = ["llm.eu.internal"]  # as handlers pass ctx.settings.allowed_teacher_hosts

    assert await deliver(d, cycle(ref)) == "dead_lettered_permanent"

    [failed] = await staged(sqlite_db, CycleFailed)
    assert "'127.0.0.1'" in failed.reason
    assert "DISTILLERY_ALLOWED_TEACHER_HOSTS ['llm.eu.internal'] does not allow it" in failed.reason
    assert teacher.requests == []


async def test_the_key_comes_from_the_named_variable_and_is_not_logged(
    sqlite_db, teacher, monkeypatch, capsys
):
    monkeypatch.setenv("TOY_TEACHER_KEY", "sk-very-secret-value")
    teacher.fail_next(1, status=503)  # a retry makes the client log a warning
    messages, _ = question(teacher)
    async with client(sqlite_db, teacher.url, api_key_env="TOY_TEACHER_KEY") as tc:
        await tc.complete(messages, purpose="output", params=PARAMS, sample=0)
    monkeypatch.delenv("TOY_TEACHER_KEY")
    async with client(sqlite_db, teacher.url, api_key_env="TOY_TEACHER_KEY") as tc:
        await tc.complete(messages, purpose="output", params=PARAMS, sample=9)

    assert [s.authorization for s in teacher.requests] == [
        "Bearer sk-very-secret-value",
        "Bearer sk-very-secret-value",
        "Bearer unused",
    ]
    captured = capsys.readouterr()
    assert "sk-very-secret-value" not in captured.out + captured.err


# The real embedded default: `transformers serve` with the tiny random-weight model.

TINY = SynthDataSettings(input_max_tokens=8, output_max_tokens=8, backoff_base_s=0.05)


def tiny_spec(served, **sections):
    return toy_spec(
        served.base_url,
        model=served.model,
        teacher={"max_concurrency": 2, "price_per_1k_prompt_tokens": 0.5},
        **sections,
    )


async def test_tiny_model_garbage_is_rejected_with_reasons_costed_and_cached(
    sqlite_db, store, served
):
    data = tiny_spec(served, synthesis={"examples": 2, "max_repairs": 1})
    ref = await put_spec(sqlite_db, store, data)
    d = deps(sqlite_db, store, **TINY.model_dump())
    event = cycle(ref)

    assert await deliver(d, event) == "acked"

    [failed] = await staged(sqlite_db, CycleFailed)
    assert failed.stage == "synth" and failed.reason.startswith("no example passed: 2 planned")
    first = await get_run(sqlite_db, str(event.cycle_id))
    reasons = json.loads(first.stats)["rejected_by_reason"]
    assert sum(reasons.values()) == 2 == first.rejected
    assert set(reasons) <= {"empty input", "not JSON", "schema", "duplicate input"}
    assert first.requests >= 2 and first.prompt_tokens > 0 and first.completion_tokens > 0
    assert first.cost_usd == pytest.approx(first.prompt_tokens * 0.5 / 1000)
    rejected = (await store.get_bytes(first.rejected_ref())).decode().splitlines()
    assert all(json.loads(line)["reason"] for line in rejected)

    # The same cycle again: every answer comes from the cache, no HTTP request at all.
    assert await deliver(d, cycle(ref, cycle_id=event.cycle_id)) == "acked"
    second = await get_run(sqlite_db, str(event.cycle_id))
    assert second.requests == 0 and second.cache_hits == first.requests - first.retries
    assert second.rejected_sha256 == first.rejected_sha256
    assert second.prompt_tokens == first.prompt_tokens  # paid once


async def test_tiny_model_answers_fail_validation_after_a_repair(sqlite_db, served):
    spec = parse_spec(tiny_spec(served, synthesis={"max_repairs": 1}))
    cache = DbResponseCache(sqlite_db, cycle_id=str(uuid.uuid4()), iteration=1)
    teacher = TeacherClient(
        spec.teacher, cache, allowed_hosts=["127.0.0.1"], operator_hosts=[], retry=FAST
    )
    async with teacher:
        synthesiser = Synthesiser(spec, teacher, TINY, scope="probe", iteration=1)
        planned = Planned(0, "billing", "terse", negative=False)
        outcome = await synthesiser.answer(planned, "I was charged twice for order 1182.")

    assert outcome.output is None
    assert outcome.reason.startswith(("not JSON", "schema"))
    assert teacher.traffic.requests == 2  # the answer and one repair
    assert outcome.prompt_tokens > 0 and outcome.completion_tokens > 0
