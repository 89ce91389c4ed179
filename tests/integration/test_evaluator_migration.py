"""Migration 0006 creates exactly the tables evaluator.models declares, and drops them again."""

from __future__ import annotations

import asyncio

from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import inspect
from sqlalchemy.ext.asyncio import create_async_engine

import evaluator.models  # noqa: F401  (registers the tables on Base.metadata)
from shared.db.migrate import downgrade, upgrade
from shared.db.tables import Base

TABLES = {"evaluator_evaluations", "evaluator_results", "evaluator_teacher_cache"}


def _inspect(conn) -> tuple[list, set[str]]:
    context = MigrationContext.configure(conn, opts={"compare_type": True})
    diff = [
        d for d in compare_metadata(context, Base.metadata) if any(t in repr(d) for t in TABLES)
    ]
    return diff, set(inspect(conn).get_table_names())


async def _diff_and_tables(url: str) -> tuple[list, set[str]]:
    engine = create_async_engine(url)
    try:
        async with engine.connect() as conn:
            return await conn.run_sync(_inspect)
    finally:
        await engine.dispose()


async def test_evaluator_tables_match_models_and_downgrade(db_url: str):
    diff, tables = await _diff_and_tables(db_url)
    assert diff == []
    assert tables >= TABLES
    await asyncio.to_thread(downgrade, db_url, "0005")
    _, tables = await _diff_and_tables(db_url)
    assert not tables & TABLES
    await asyncio.to_thread(upgrade, db_url)
    _, tables = await _diff_and_tables(db_url)
    assert tables >= TABLES
