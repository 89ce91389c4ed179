"""Tables the synth_data service owns (prefixed with its name)."""

from shared.db.tables import Base  # noqa: F401
