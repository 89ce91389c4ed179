"""Engine and session factory for PostgreSQL (production) and SQLite (embedded default)."""

from __future__ import annotations

import asyncio
from typing import Any

from sqlalchemy import event
from sqlalchemy.ext.asyncio import AsyncEngine, async_sessionmaker, create_async_engine
from sqlalchemy.util import await_only

from .uow import UnitOfWork


def make_engine(url: str, **kwargs: Any) -> AsyncEngine:
    if url.startswith("sqlite"):
        engine = create_async_engine(url, connect_args={"timeout": 30}, **kwargs)
        _serialise_sqlite_writers(engine)
        return engine
    return create_async_engine(url, pool_pre_ping=True, **kwargs)


def _serialise_sqlite_writers(engine: AsyncEngine) -> None:
    # Several processes share one SQLite file. A deferred BEGIN that later writes can fail with
    # SQLITE_BUSY without waiting; BEGIN IMMEDIATE takes the write lock up front and honours the
    # busy timeout, and WAL keeps readers off the writers' backs.
    @event.listens_for(engine.sync_engine, "connect")
    def _on_connect(dbapi_connection: Any, _: Any) -> None:
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA journal_mode=WAL")
        # In WAL mode NORMAL syncs the log at checkpoints instead of at every commit: a commit
        # survives the process being killed (the chaos tests SIGKILL services after commits),
        # and only an OS crash or power loss can take back the last ones. The embedded default
        # runs nats-server on the same machine, whose JetStream store syncs to disk every two
        # minutes by default, so FULL (an fsync per commit: 0.4 ms on the dev VM's idle disk,
        # far more when the disk is shared) would buy durability the broker beside it lacks.
        # PostgreSQL, the production database, keeps synchronous_commit on.
        cursor.execute("PRAGMA synchronous=NORMAL")
        cursor.execute("PRAGMA busy_timeout=30000")
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.close()

    # Every aiosqlite call is a hand-off to the connection's thread and back, which costs more
    # than the SQL itself (about 0.3 ms each on a loaded 2-core VM, mostly the GIL changing
    # hands). A unit of work (claim, effect, commit) took 11; the hook below removes two. The
    # pool keeps its default ROLLBACK on return: skipping it when no transaction looked open
    # left a cancelled unit of work's connection holding SQLite's write lock.
    @event.listens_for(engine.sync_engine, "begin")
    def _on_begin(conn: Any) -> None:
        # aiosqlite's Connection.execute is one hand-off; exec_driver_sql opens, runs and closes
        # a cursor, three.
        driver = conn.connection.driver_connection
        if driver.in_transaction:
            # A unit of work cancelled mid-statement can hand its connection back with the
            # transaction open; BEGIN would then fail. Its writes were never committed.
            await_only(driver.rollback())
        await_only(driver.execute("BEGIN IMMEDIATE"))


class Database:
    """One per process: the engine, its sessions, and a wake-up for the local outbox relay."""

    def __init__(self, url: str, **engine_kwargs: Any) -> None:
        self.url = url
        self.engine = make_engine(url, **engine_kwargs)
        self.sessions = async_sessionmaker(self.engine, expire_on_commit=False)
        self.outbox_signal = asyncio.Event()

    @property
    def dialect(self) -> str:
        return self.engine.dialect.name

    def uow(self) -> UnitOfWork:
        return UnitOfWork(self.sessions, self.outbox_signal, self.dialect)

    async def dispose(self) -> None:
        await self.engine.dispose()
