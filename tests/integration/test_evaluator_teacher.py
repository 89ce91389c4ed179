"""The teacher client against the scripted OpenAI-compatible server, over real HTTP."""

from __future__ import annotations

import pytest
from sqlalchemy import func, select

from evaluator.data import GoldenRow
from evaluator.models import TeacherCacheRow
from evaluator.teacher import TeacherClient, check_residency
from shared.bus import PermanentError, TransientError
from shared.llm import ResidencyError, RetryPolicy
from shared.tasks.spec import Residency, TaskSpec, Teacher
from tests.fixtures.eval_teacher import WRONG, scripted_teacher

GOLDEN = [
    {"id": "a", "input": "printer", "output": '{"team": "it"}', "use_case": "it"},
    {"id": "b", "input": "vpn", "output": '{"team": "it"}', "use_case": "it"},
    {"id": "c", "input": "invoice", "output": '{"team": "billing"}', "use_case": "billing"},
    {
        "id": "d",
        "input": "weather?",
        "output": '{"team": "none"}',
        "use_case": "it",
        "negative": True,
    },
]
ROWS = [GoldenRow.model_validate(r) for r in GOLDEN]


FAST = RetryPolicy(max_attempts=3, base_s=0.01, cap_s=0.05)


def client(url: str, db, **over) -> TeacherClient:
    teacher = Teacher(base_url=url, model="scripted", max_concurrency=2, **over)
    return TeacherClient(
        teacher, db, max_tokens=64, spec_hosts=["127.0.0.1"], operator_hosts=[], retry=FAST
    )


async def test_answers_are_scripted_per_slice_and_cached_by_request(sqlite_db):
    with scripted_teacher(GOLDEN, {"it": 0.5, "negative": 0.0}) as server:
        c = client(server.base_url, sqlite_db)
        try:
            first = await c.answer_golden("Route it.", ROWS)
            assert [a.content for a in first] == [
                '{"team": "it"}',
                WRONG,
                '{"team": "billing"}',
                WRONG,
            ]
            assert not any(a.cached for a in first)
            assert first[0].prompt_tokens == 3 and first[0].completion_tokens == 2
            assert len(server.requests) == 4
            again = await c.answer_golden("Route it.", ROWS)
            assert [a.content for a in again] == [a.content for a in first]
            assert all(a.cached for a in again) and len(server.requests) == 4
            # Other instructions are another request: asked, not served from the cache.
            await c.answer_golden("Route it, briefly.", ROWS[:1])
            assert len(server.requests) == 5
        finally:
            await c.close()
    async with sqlite_db.uow() as uow:
        assert await uow.session.scalar(select(func.count()).select_from(TeacherCacheRow)) == 5


async def test_judge_verdicts(sqlite_db):
    with scripted_teacher(GOLDEN) as server:
        c = client(server.base_url, sqlite_db)
        try:
            replies = {"a": '{"team": "it"}', "b": '{"team": "billing"}', "c": "?", "d": ""}
            assert await c.judge("Route it.", ROWS, replies) == [True, False, False, False]
        finally:
            await c.close()


@pytest.mark.parametrize(("status", "error"), [(401, PermanentError), (503, TransientError)])
async def test_refusals_are_permanent_and_outages_transient(sqlite_db, status, error):
    with scripted_teacher(GOLDEN) as server:
        server.status = status
        c = client(server.base_url, sqlite_db, timeout_s=5)
        try:
            with pytest.raises(error, match=str(status)):
                await c.answer_golden("Route it.", ROWS[:1])
        finally:
            await c.close()
        # An outage is retried (FAST allows 3 attempts); a refusal is not.
        assert len(server.requests) == (3 if status == 503 else 1)
        assert c.ledger.requests == len(server.requests)
    async with sqlite_db.uow() as uow:
        assert await uow.session.scalar(select(func.count()).select_from(TeacherCacheRow)) == 0


def test_residency_switch_refuses_a_teacher_outside_the_allow_list():
    # model_construct: a spec that validation would refuse, as if an old or forged one.
    spec = TaskSpec.model_construct(
        teacher=Teacher(base_url="https://api.teacher.example/v1", model="m"),
        residency=Residency(allowed_teacher_hosts=["127.0.0.1"]),
    )
    with pytest.raises(PermanentError, match=r"api\.teacher\.example"):
        check_residency(spec, [])


def test_the_client_refuses_a_host_outside_the_operators_list(sqlite_db):
    with scripted_teacher(GOLDEN) as server:
        teacher = Teacher(base_url=server.base_url, model="scripted")
        with pytest.raises(ResidencyError) as refused:
            TeacherClient(
                teacher,
                sqlite_db,
                max_tokens=64,
                spec_hosts=["127.0.0.1"],
                operator_hosts=["llm.eu.internal"],
            )
    reason = str(refused.value)
    assert "'127.0.0.1'" in reason
    assert "residency.allowed_teacher_hosts ['127.0.0.1'] allows it" in reason
    assert "DISTILLERY_ALLOWED_TEACHER_HOSTS ['llm.eu.internal'] does not allow it" in reason
    assert server.requests == []


async def test_an_evaluation_whose_teacher_is_outside_the_operators_list_sends_nothing(
    sqlite_db, tmp_path
):
    """The whole service path: the platform setting reaches the evaluator's deps through its
    ServiceContext, the spec allows the host, and the cycle fails before any request."""
    from evaluator.handlers import build_deps
    from shared.artifacts import AsyncArtifactStore, LocalArtifactStore
    from shared.bus import make_broker
    from shared.events import ConsumerPolicy
    from shared.events.catalog import CycleFailed, DeadLettered, EvaluationCompleted
    from shared.runtime.service import ServiceContext
    from shared.settings import PlatformSettings
    from tests.integration import test_evaluator_service as svc

    store = LocalArtifactStore(tmp_path / "artifacts")
    # Never loaded: residency is checked before the models are fetched.
    base = store.put_bytes(b"not a model")
    platform = PlatformSettings(
        home=tmp_path / "home",
        database_url=sqlite_db.url,
        allowed_teacher_hosts="llm.eu.internal",
    )
    ctx = ServiceContext(
        name="evaluator",
        settings=platform,
        db=sqlite_db,
        broker=make_broker("nats://127.0.0.1:1", client_name="unused"),
        policy=ConsumerPolicy(),
        artifacts=AsyncArtifactStore(store),
    )
    with scripted_teacher(svc.GOLDEN) as server:
        spec = svc.make_spec(store, server.base_url, base)  # its own list allows 127.0.0.1
        world = svc.World(ctx, build_deps(ctx, svc.SETTINGS), store, spec, base, {"cand": base})
        event = svc.trained(world, "cand")

        assert await svc.deliver(world, event) == "dead_lettered_permanent"

        assert server.requests == []
    out = await svc.answers(sqlite_db, event)
    [failed] = out[CycleFailed.subject]
    assert DeadLettered.subject in out and EvaluationCompleted.subject not in out
    assert failed.stage == "evaluation"
    assert "'127.0.0.1'" in failed.reason
    assert "DISTILLERY_ALLOWED_TEACHER_HOSTS ['llm.eu.internal'] does not allow it" in failed.reason
