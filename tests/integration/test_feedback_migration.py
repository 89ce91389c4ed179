"""Migration 0010 creates exactly the tables feedback_collector.models declares, and drops them."""

from __future__ import annotations

import feedback_collector.models  # noqa: F401  (registers the tables on Base.metadata)
from tests.fixtures.migrations import assert_migration_owns

TABLES = {
    "feedback_collector_traces",
    "feedback_collector_feedback",
    "feedback_collector_rollouts",
    "feedback_collector_examples",
    "feedback_collector_rejections",
    "feedback_collector_cycles",
}


async def test_feedback_tables_match_models_and_downgrade(db_url: str):
    await assert_migration_owns(db_url, TABLES, previous="0009")
