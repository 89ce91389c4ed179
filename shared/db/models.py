"""Every table's metadata in one place, for Alembic.

Each service that owns tables adds its models module here, so one history covers them all.
"""

import shared.tasks.tables  # noqa: F401  (registers the control-plane tables on Base)
from shared.db.tables import Base

metadata = Base.metadata
