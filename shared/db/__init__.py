"""Persistence kernel: engine, unit of work, inbox and outbox tables."""

from .engine import Database, make_engine
from .tables import Base, InboxRow, OutboxRow
from .uow import UnitOfWork

__all__ = ["Base", "Database", "InboxRow", "OutboxRow", "UnitOfWork", "make_engine"]
