"""Bring a run folder up to what the database knows, before the worker starts.

On the machine that trained the run so far the folder is already complete and nothing is
fetched. On a fresh machine (a rescheduled pod, a wiped disk) the finished trials' adapters
and the interrupted trial's last checkpoint come back from the artifact store, sha-verified
and safetensors-only, so the worker resumes instead of starting over.
"""

from __future__ import annotations

import asyncio
import json
import uuid
from pathlib import Path

from shared.artifacts import ArtifactStore
from shared.db import Database
from shared.events.base import ArtifactRef
from shared.models import fetch_model_dir

from .checkpoint import completed_checkpoints
from .domain import FINISHED, TrialRecord
from .repository import trials_of
from .worker import PARAMS, write_json


async def restore_run_dir(
    db: Database, store: ArtifactStore, run_id: uuid.UUID, run_dir: Path
) -> list[TrialRecord]:
    """Fetch what is missing locally; returns the trials the database records as finished."""
    finished = []
    for row in await trials_of(db, run_id):
        trial_dir = run_dir / f"trial-{row.number}"
        if row.state in FINISHED and row.record:
            finished.append(TrialRecord.from_dict(json.loads(row.record)))
            if row.adapter and not (trial_dir / "adapter").exists():
                await _fetch(store, row.adapter, trial_dir / "adapter")
            continue
        if not (trial_dir / PARAMS).exists():
            write_json(trial_dir / PARAMS, {"number": row.number, "params": json.loads(row.params)})
        local = completed_checkpoints(trial_dir)
        local_step = local[-1][0] if local else -1
        if row.checkpoint and (row.checkpoint_step or 0) > local_step:
            await _fetch(store, row.checkpoint, trial_dir / f"checkpoint-{row.checkpoint_step}")
    return finished


async def _fetch(store: ArtifactStore, ref_json: str, dest: Path) -> None:
    ref = ArtifactRef.model_validate_json(ref_json)
    await asyncio.to_thread(fetch_model_dir, store, ref, dest)
