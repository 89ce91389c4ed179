"""Publishing a dataset version: its artifacts, its rows and the DatasetPublished answer.

Two callers: the curation stage, when no row needs review, and `review.decide_review` once the
last review of a run is decided (in the CLI's process, not on the bus). Artifacts are
content-addressed and the answer's id derives from the source event, so a publish retried after
a crash writes the same bytes and at most one event.
"""

from __future__ import annotations

import asyncio
import uuid
from dataclasses import dataclass

from shared.artifacts import AsyncArtifactStore
from shared.db import UnitOfWork
from shared.events.base import ArtifactRef
from shared.events.catalog import CycleFailed, DatasetPublished, SynthCompleted
from shared.tasks import TaskSpec

from . import repository as repo
from .decisions import ReviewDecision, apply_decisions
from .domain import Draft, Rejection, rejection_summary
from .manifest import JSONL, MANIFEST_MEDIA_TYPE, build_manifest, render
from .models import CurationRun
from .settings import NAME

_ANSWER_IDS = uuid.UUID("0c7d1f4e-8a52-4b0e-9d6b-3f1c2a9e5d70")


@dataclass(frozen=True)
class Publication:
    manifest: ArtifactRef
    files: dict[str, ArtifactRef]
    train: int
    validation: int
    rejected: list[Rejection]


async def build_publication(
    artifacts: AsyncArtifactStore,
    spec: TaskSpec,
    source: SynthCompleted,
    draft: Draft,
    decisions: list[ReviewDecision],
) -> Publication | None:
    """Write the dataset's artifacts; None when review left no new row to publish."""
    final = apply_decisions(draft, decisions)
    if not final.kept:
        return None
    share = float(draft.options["validation_share"])
    rendered = await asyncio.to_thread(render, final, spec.instructions, share)
    refs = {
        name: await artifacts.put_bytes(data, media_type=JSONL)
        for name, data in rendered.files.items()
    }
    body = build_manifest(
        task={
            "name": source.task_name,
            "version": source.task_version,
            "spec": source.task_spec.model_dump(mode="json"),
        },
        cycle_id=str(source.cycle_id),
        iteration=source.iteration,
        draft=final,
        rendered=rendered,
        decisions=decisions,
        refs=refs,
    )
    manifest = await artifacts.put_bytes(body, media_type=MANIFEST_MEDIA_TYPE)
    return Publication(
        manifest, refs, len(rendered.train), len(rendered.validation), rendered.rejected
    )


async def record_publication(
    uow: UnitOfWork,
    run: CurationRun,
    source: SynthCompleted,
    publication: Publication,
    new_rejections: list[Rejection],
) -> DatasetPublished:
    """The dataset's rows; returns its answer, for the caller to publish in the same unit."""
    version = publication.manifest.sha256
    await repo.add_rejections(uow.session, run.id, new_rejections, version)
    await repo.add_dataset(
        uow.session, run, publication.manifest, publication.train, publication.validation
    )
    run.state, run.finished_at = repo.PUBLISHED, repo.now()
    return source.caused(
        DatasetPublished,
        producer=NAME,
        event_id=uuid.uuid5(_ANSWER_IDS, f"{source.event_id}:dataset"),
        task_name=source.task_name,
        task_version=source.task_version,
        task_spec=source.task_spec,
        iteration=source.iteration,
        dataset_version=version,
        manifest=publication.manifest,
        train=publication.files["train"],
        validation=publication.files["validation"],
        train_examples=publication.train,
        validation_examples=publication.validation,
    )


def cycle_failed(source: SynthCompleted, rows: int, rejected: list[Rejection]) -> CycleFailed:
    return source.caused(
        CycleFailed,
        producer=NAME,
        event_id=uuid.uuid5(_ANSWER_IDS, f"{source.event_id}:failed"),
        task_name=source.task_name,
        stage="curation",
        reason=(
            f"no usable rows: all {rows} rows of iteration {source.iteration} rejected "
            f"({rejection_summary(rejected)})"
        ),
    )
