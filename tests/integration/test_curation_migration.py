"""Migration 0004 creates exactly the tables curation.models declares, and drops them again."""

from __future__ import annotations

import curation.models  # noqa: F401  (registers the tables on Base.metadata)
from tests.fixtures.migrations import assert_migration_owns

TABLES = {"curation_runs", "curation_reviews", "curation_rejections", "curation_datasets"}


async def test_curation_tables_match_models_and_downgrade(db_url: str):
    await assert_migration_owns(db_url, TABLES, previous="0003")
