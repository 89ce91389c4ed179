"""Getting each model's raw outputs on a golden set: from the results cache, from the teacher,
or from a worker process running the local models.

A model's results are cached by (model key, golden-set sha256, setup sha256): the setup hash
covers everything else that shapes the outputs (instructions, generation settings, probe set,
general text), so an unchanged base model or teacher is never run twice on the same set.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from sqlalchemy import select
from sqlalchemy.dialects import postgresql, sqlite

from shared.artifacts import ArtifactError, AsyncArtifactStore
from shared.bus import Delivery, PermanentError
from shared.db import Database
from shared.events.base import ArtifactRef
from shared.logs import get_logger
from shared.models import ModelFormatError, fetch_model_dir, read_manifest
from shared.runtime.worker import run_in_worker

from .models import ResultRow

log = get_logger(__name__)
WORKER = "evaluator.worker:evaluate"


def digest(data: Any) -> str:
    return hashlib.sha256(json.dumps(data, sort_keys=True).encode()).hexdigest()


@dataclass(frozen=True)
class LocalModel:
    """A model to run: full weights, or a base plus a LoRA adapter. `key` caches its results."""

    key: str
    model: ArtifactRef
    adapter: ArtifactRef | None = None


class ArtifactReader:
    """Artifact reads where anything missing or corrupt is a permanent, named failure."""

    def __init__(self, artifacts: AsyncArtifactStore) -> None:
        self.artifacts = artifacts

    async def get(self, ref: ArtifactRef, what: str) -> bytes:
        try:
            return await self.artifacts.get_bytes(ref)
        except ArtifactError as exc:
            raise PermanentError(f"{what} {ref.uri}: {exc}") from exc

    async def manifest(self, ref: ArtifactRef, what: str) -> dict[str, Any]:
        try:
            return await asyncio.to_thread(read_manifest, self.artifacts.sync, ref)
        except (ArtifactError, ModelFormatError, ValueError) as exc:
            raise PermanentError(f"{what} {ref.uri}: {exc}") from exc

    async def model_dir(self, ref: ArtifactRef, root: Path, what: str) -> Path:
        """Fetch (or reuse) a model directory; every file is sha256-verified on the way."""
        try:
            return await asyncio.to_thread(
                fetch_model_dir, self.artifacts.sync, ref, root / ref.sha256
            )
        except (ArtifactError, ModelFormatError, ValueError) as exc:
            raise PermanentError(f"{what} {ref.uri} refused: {exc}") from exc


class ResultsCache:
    def __init__(self, db: Database, reader: ArtifactReader) -> None:
        self.db = db
        self.reader = reader

    async def get(self, model_key: str, golden: str, setup: str) -> dict[str, Any] | None:
        async with self.db.uow() as uow:
            row = await uow.session.scalar(
                select(ResultRow).where(
                    ResultRow.model_key == model_key,
                    ResultRow.golden_sha256 == golden,
                    ResultRow.setup_sha256 == setup,
                )
            )
            # Read inside the unit of work: its exit rolls back, which expires loaded rows.
            ref = row.ref() if row is not None else None
        if ref is None:
            return None
        return json.loads(await self.reader.get(ref, "cached results"))

    async def put(
        self, model_key: str, golden: str, setup: str, role: str, result: dict[str, Any]
    ) -> None:
        body = json.dumps(result, sort_keys=True).encode()
        ref = await self.reader.artifacts.put_bytes(body, media_type="application/json")
        insert = postgresql.insert if self.db.dialect == "postgresql" else sqlite.insert
        stmt = insert(ResultRow).values(
            model_key=model_key,
            golden_sha256=golden,
            setup_sha256=setup,
            role=role,
            created_at=datetime.now(UTC),
            **ref.model_dump(),
        )
        # A cache, not an effect: written before the claim, and a second writer is harmless.
        async with self.db.uow() as uow:
            await uow.session.execute(stmt.on_conflict_do_nothing())
            await uow.commit()


async def run_local(
    models: list[LocalModel],
    payload: dict[str, Any],
    *,
    reader: ArtifactReader,
    work_dir: Path,
    delivery: Delivery,
    log_name: str,
) -> dict[str, dict[str, Any]]:
    """Fetch each model (sha-verified), then run them all in one worker process."""
    entries = []
    for m in models:
        model_dir = await reader.model_dir(m.model, work_dir / "models", "model")
        adapter_dir = None
        if m.adapter is not None:
            adapter_dir = await reader.model_dir(m.adapter, work_dir / "models", "adapter")
        entries.append(
            {
                "key": m.key,
                "model_dir": str(model_dir),
                "adapter_dir": str(adapter_dir) if adapter_dir else None,
            }
        )

    async def on_progress(update: dict[str, Any]) -> None:
        log.info("evaluation progress", **update)

    (work_dir / "logs").mkdir(parents=True, exist_ok=True)
    out = await run_in_worker(
        WORKER,
        {**payload, "models": entries},
        heartbeat=delivery.heartbeat(),
        on_progress=on_progress,
        log_path=work_dir / "logs" / f"{log_name}.log",
    )
    return out["results"]
