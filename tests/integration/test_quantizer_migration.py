"""Migration 0007 creates exactly the tables quantizer.models declares, and drops them again."""

from __future__ import annotations

import quantizer.models  # noqa: F401  (registers the tables on Base.metadata)
from tests.fixtures.migrations import assert_migration_owns

TABLES = {"quantizer_runs", "quantizer_variants"}


async def test_quantizer_tables_match_models_and_downgrade(db_url: str):
    await assert_migration_owns(db_url, TABLES, previous="0006")
