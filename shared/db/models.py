"""Every table's metadata in one place, for Alembic.

Each service that owns tables adds its models module here, so one history covers them all.
This module is read by migrations only; no service imports it.
"""

import curation.models
import evaluator.models
import shared.tasks.tables
import synth_data.models
import trainer.models
from shared.db.tables import Base

__all__ = ["curation", "evaluator", "shared", "synth_data", "trainer"]

metadata = Base.metadata
