"""Migration 0006 creates exactly the tables evaluator.models declares, and drops them again."""

from __future__ import annotations

import evaluator.models  # noqa: F401  (registers the tables on Base.metadata)
from tests.fixtures.migrations import assert_migration_owns

TABLES = {"evaluator_evaluations", "evaluator_results", "evaluator_teacher_cache"}


async def test_evaluator_tables_match_models_and_downgrade(db_url: str):
    await assert_migration_owns(db_url, TABLES, previous="0005")
