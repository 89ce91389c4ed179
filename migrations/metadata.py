"""Every table's metadata in one place, for Alembic (it lives here, not in shared/: only
migrations need to import every service).

Each service that owns tables adds its models module here, so one history covers them all.
No service imports it: a service never imports another service.
"""

import curation.models
import deployer.models
import evaluator.models
import feedback_collector.models
import quantizer.models
import shared.tasks.tables
import synth_data.models
import trainer.models
from shared.db.tables import Base

__all__ = [
    "curation",
    "deployer",
    "evaluator",
    "feedback_collector",
    "quantizer",
    "shared",
    "synth_data",
    "trainer",
]

metadata = Base.metadata
