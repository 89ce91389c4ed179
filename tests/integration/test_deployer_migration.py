"""Migration 0009 creates exactly the tables deployer.models declares, and drops them again."""

from __future__ import annotations

import deployer.models  # noqa: F401  (registers the tables on Base.metadata)
from tests.fixtures.migrations import assert_migration_owns

TABLES = {"deployer_deployments", "deployer_api_keys"}


async def test_deployer_tables_match_models_and_downgrade(db_url: str):
    await assert_migration_owns(db_url, TABLES, previous="0007")
