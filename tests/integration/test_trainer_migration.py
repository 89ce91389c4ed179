"""Migration 0005 creates exactly the tables trainer.models declares, and drops them again."""

from __future__ import annotations

import trainer.models  # noqa: F401  (registers the tables on Base.metadata)
from tests.fixtures.migrations import assert_migration_owns


async def test_trainer_tables_match_models_and_downgrade(db_url: str):
    await assert_migration_owns(db_url, {"trainer_runs", "trainer_trials"}, previous="0004")
