"""Migration 0003 creates exactly the tables synth_data.models declares, and drops them again."""

from __future__ import annotations

import synth_data.models  # noqa: F401  (registers the tables on Base.metadata)
from tests.fixtures.migrations import assert_migration_owns

TABLES = {"synth_data_tasks", "synth_data_responses", "synth_data_runs"}


async def test_synth_data_tables_match_models_and_downgrade(db_url: str):
    await assert_migration_owns(db_url, TABLES, previous="0002")
