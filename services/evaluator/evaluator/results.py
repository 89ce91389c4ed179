"""Getting each model's raw outputs on a golden set: from the results cache, or from a worker
process running the local models (the teacher's come through teacher.py).

A model's results are cached by (model key, golden-set sha256, setup sha256): the setup hash
covers everything else that shapes the outputs (instructions, generation settings, probe set,
general text), so an unchanged base model or teacher is never run twice on the same set.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from shared.artifacts import ArtifactError, AsyncArtifactStore
from shared.bus import PermanentError
from shared.db import Database
from shared.events.base import ArtifactRef
from shared.logs import get_logger
from shared.models import ModelFormatError, fetch_model_dir, read_manifest
from shared.runtime.stage import StageRun

from .contract import EvalPayload, EvalResult, LocalOutputs
from .repository import cached_results_ref, remember_results

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


@dataclass(frozen=True)
class FetchedModel:
    """A LocalModel on local disk, verified; inputs.worker_payload gives it its prompt."""

    key: str
    model_dir: Path
    adapter_dir: Path | None = None


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
    """Results as JSON artifacts, found through `evaluator_results` rows."""

    def __init__(self, db: Database, reader: ArtifactReader) -> None:
        self.db = db
        self.reader = reader

    async def get(self, model_key: str, golden: str, setup: str) -> dict[str, Any] | None:
        ref = await cached_results_ref(self.db, model_key, golden, setup)
        if ref is None:
            return None
        return json.loads(await self.reader.get(ref, "cached results"))

    async def put(
        self, model_key: str, golden: str, setup: str, role: str, result: dict[str, Any]
    ) -> None:
        body = json.dumps(result, sort_keys=True).encode()
        ref = await self.reader.artifacts.put_bytes(body, media_type="application/json")
        await remember_results(self.db, model_key, golden, setup, role, ref)


async def fetch(models: list[LocalModel], reader: ArtifactReader, root: Path) -> list[FetchedModel]:
    """Each model's directories on local disk, sha-verified: a corrupt one is refused here."""
    out = []
    for m in models:
        model_dir = await reader.model_dir(m.model, root, "model")
        adapter_dir = None
        if m.adapter is not None:
            adapter_dir = await reader.model_dir(m.adapter, root, "adapter")
        out.append(FetchedModel(key=m.key, model_dir=model_dir, adapter_dir=adapter_dir))
    return out


async def run_local(
    run: StageRun, payload: EvalPayload, *, log_path: Path
) -> dict[str, LocalOutputs]:
    """Run every model in the payload in one worker process, under the stage's heartbeat."""

    async def on_progress(update: dict[str, Any]) -> None:
        log.info("evaluation progress", **update)

    log_path.parent.mkdir(parents=True, exist_ok=True)
    out = await run.process(WORKER, payload, EvalResult, on_progress=on_progress, log_path=log_path)
    return out.results
