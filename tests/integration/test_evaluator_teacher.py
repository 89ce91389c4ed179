"""The teacher client against the scripted OpenAI-compatible server, over real HTTP."""

from __future__ import annotations

import pytest
from sqlalchemy import func, select

from evaluator.data import GoldenRow
from evaluator.models import TeacherCacheRow
from evaluator.teacher import TeacherClient, check_residency
from shared.bus import PermanentError, TransientError
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


def client(url: str, db, **over) -> TeacherClient:
    teacher = Teacher(base_url=url, model="scripted", max_concurrency=2, **over)
    return TeacherClient(teacher, db, max_tokens=64)


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
    async with sqlite_db.uow() as uow:
        assert await uow.session.scalar(select(func.count()).select_from(TeacherCacheRow)) == 0


def test_residency_switch_refuses_a_teacher_outside_the_allow_list():
    # model_construct: a spec that validation would refuse, as if an old or forged one.
    spec = TaskSpec.model_construct(
        teacher=Teacher(base_url="https://api.teacher.example/v1", model="m"),
        residency=Residency(allowed_teacher_hosts=["127.0.0.1"]),
    )
    with pytest.raises(PermanentError, match=r"api\.teacher\.example"):
        check_residency(spec)
