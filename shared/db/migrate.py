"""Run Alembic from code (the CLI and tests) with the repository's single history."""

from __future__ import annotations

import os
from pathlib import Path

from alembic import command
from alembic.config import Config

_ROOT = Path(__file__).resolve().parents[2]


def alembic_config(url: str) -> Config:
    ini = Path(os.environ.get("DISTILLERY_ALEMBIC_INI", _ROOT / "alembic.ini"))
    if not ini.exists():
        raise FileNotFoundError(f"alembic.ini not found at {ini}; set DISTILLERY_ALEMBIC_INI")
    cfg = Config(str(ini))
    cfg.set_main_option("sqlalchemy.url", url)
    cfg.attributes["configure_logging"] = False
    return cfg


def upgrade(url: str, revision: str = "head") -> None:
    """Blocking; from async code call it through `asyncio.to_thread`."""
    command.upgrade(alembic_config(url), revision)


def downgrade(url: str, revision: str = "base") -> None:
    command.downgrade(alembic_config(url), revision)
