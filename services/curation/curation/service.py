"""Curation use cases: curate a source into a draft; publish it now, or once reviewed.

`curate_synth_batch` is what the service runs for every synth.completed: the heavy work
(fetching, the pipeline in a worker thread, writing artifacts) happens before the unit of work,
then the claim, the run's rows and the answer (DatasetPublished, CycleFailed, or nothing while
reviews are pending) commit together. Publishing after review (`review.decide_review`) goes
through `build_publication` and `record_publication` here too.

Every artifact is content-addressed and every answer has an id derived from its source event,
so a redelivered event, or a publish retried after a crash, produces the same bytes and at most
one event.
"""

from __future__ import annotations

import asyncio
import json
import uuid
from contextlib import AbstractAsyncContextManager, nullcontext
from dataclasses import asdict, dataclass, replace

from shared.artifacts import ArtifactError, AsyncArtifactStore
from shared.bus.errors import PermanentError
from shared.db import Database, UnitOfWork
from shared.events.base import ArtifactRef
from shared.events.catalog import CycleFailed, DatasetPublished, SynthCompleted
from shared.tasks import TaskSpec, TaskSpecError, spec_from_json

from . import repository as repo
from .decisions import ReviewDecision, apply_decisions
from .decontam import GoldenIndex
from .domain import (
    Draft,
    Options,
    Rejection,
    curate,
    parse_chat_rows,
    parse_rows,
    rejection_summary,
)
from .filters import QualityRules
from .manifest import JSONL, MANIFEST_MEDIA_TYPE, build_manifest, render
from .models import CurationRun
from .settings import CurationSettings

NAME = "curation"
_ANSWER_IDS = uuid.UUID("0c7d1f4e-8a52-4b0e-9d6b-3f1c2a9e5d70")


@dataclass
class Deps:
    db: Database
    artifacts: AsyncArtifactStore
    settings: CurationSettings


@dataclass(frozen=True)
class Publication:
    manifest: ArtifactRef
    files: dict[str, ArtifactRef]
    train: int
    validation: int
    rejected: list[Rejection]


def options_for(spec: TaskSpec, settings: CurationSettings) -> Options:
    c = spec.curation
    return Options(
        near_duplicate_threshold=c.near_duplicate_threshold,
        min_chars=c.min_chars,
        max_chars=c.max_chars,
        decontamination_ngram=c.decontamination_ngram,
        validation_share=c.validation_share,
        review_share=c.review_share,
        judge=c.judge,
        judge_min_score=settings.judge_min_score,
        num_perm=settings.num_perm,
        shingle_words=settings.shingle_words,
        minhash_seed=settings.minhash_seed,
    )


def rules_for(spec: TaskSpec) -> QualityRules:
    c = spec.curation
    return QualityRules(c.min_chars, c.max_chars, spec.output_schema, spec.negatives.expected)


async def fetch(artifacts: AsyncArtifactStore, ref: ArtifactRef, what: str) -> bytes:
    try:
        return await artifacts.get_bytes(ref)
    except ArtifactError as exc:  # missing, corrupt, or from another store: retrying cannot help
        raise PermanentError(f"{what} {ref.uri}: {exc}") from exc


async def load_spec(artifacts: AsyncArtifactStore, ref: ArtifactRef) -> TaskSpec:
    try:
        return spec_from_json(await fetch(artifacts, ref, "task spec"))
    except TaskSpecError as exc:
        raise PermanentError(str(exc)) from exc


def golden_index(data: bytes, n: int) -> GoldenIndex:
    try:
        rows = [json.loads(line) for line in data.decode().splitlines() if line.strip()]
        return GoldenIndex(((str(r["id"]), str(r["input"])) for r in rows), n)
    except (ValueError, KeyError, TypeError) as exc:
        raise PermanentError(f"golden set is not valid JSONL rows: {exc!r}") from exc


# --- curating a synth batch -------------------------------------------------------------------


async def curate_synth_batch(
    deps: Deps,
    event: SynthCompleted,
    consumer: str,
    heartbeat: AbstractAsyncContextManager[None] | None = None,
) -> None:
    async with deps.db.uow() as uow:
        if await repo.claimed(uow.session, consumer, str(event.event_id)):
            return
    async with heartbeat or nullcontext():
        spec = await load_spec(deps.artifacts, event.task_spec)
        draft = await _draft(deps, spec, event)
        body = await asyncio.to_thread(draft.to_json)
        draft_ref = await deps.artifacts.put_bytes(body, media_type="application/json")
        publication = None
        if draft.kept and not draft.review:
            publication = await build_publication(deps.artifacts, spec, event, draft, [])
    async with deps.db.uow() as uow:
        if not await uow.claim(consumer, event):
            return
        if publication is not None:
            state = repo.PUBLISHED
        else:
            state = repo.PENDING_REVIEW if draft.kept else repo.FAILED
        run = await repo.add_run(
            uow.session,
            event,
            "synth",
            task_name=event.task_name,
            task_version=event.task_version,
            iteration=event.iteration,
            draft=draft_ref,
            state=state,
        )
        if publication is not None:
            await record_publication(uow, run, event, publication, publication.rejected)
        elif state == repo.FAILED:
            await repo.add_rejections(uow.session, run.id, draft.rejected, None)
            await uow.publish(cycle_failed(event, draft.input_rows, draft.rejected))
        else:
            await repo.add_rejections(uow.session, run.id, draft.rejected, None)
            queued = set(draft.review)
            await repo.add_reviews(uow.session, run.id, [r for r in draft.kept if r.id in queued])
        await uow.commit()


async def _draft(deps: Deps, spec: TaskSpec, event: SynthCompleted) -> Draft:
    from .judge import TeacherJudge

    options = options_for(spec, deps.settings)
    try:
        golden_ref = spec.ref("golden_set")
    except ValueError as exc:
        raise PermanentError(f"task spec: {exc}") from exc
    batch = await fetch(deps.artifacts, event.batch, "synth batch")
    golden = await fetch(deps.artifacts, golden_ref, "golden set")
    carried, previous = await _previous(deps, event)
    judge = TeacherJudge(spec, deps.settings.judge_max_rows) if options.judge else None

    def pipeline() -> Draft:
        rows, malformed = parse_rows(batch)
        index = golden_index(golden, options.decontamination_ngram)
        draft = curate(rows, rules_for(spec), index, options, carried, judge)
        rejected = sorted([*malformed, *draft.rejected], key=lambda r: (r.reason, r.row_id))
        return replace(draft, rejected=rejected, input_rows=draft.input_rows + len(malformed))

    # CPU-bound for seconds on big batches: a worker thread keeps the event loop (heartbeats,
    # other deliveries, the relay) responsive while it runs.
    draft = await asyncio.to_thread(pipeline)
    source = {
        "kind": "synth",
        "batch": event.batch.model_dump(mode="json"),
        "cycle_id": str(event.cycle_id),
        "iteration": event.iteration,
        "task_version": event.task_version,
        "examples": event.examples,
    }
    return replace(draft, source=source, previous=previous, options=asdict(options))


async def _previous(deps: Deps, event: SynthCompleted) -> tuple[list, dict | None]:
    """Rows and lineage of the dataset this iteration adds to (none on iteration 1)."""
    if event.iteration <= 1:
        return [], None
    async with deps.db.uow() as uow:
        row = await repo.previous_dataset(
            uow.session, str(event.cycle_id), event.task_name, event.iteration
        )
        # Read inside the unit of work: its rollback on exit expires loaded rows.
        found = (row.dataset_version, row.manifest_ref()) if row else None
    if found is None:
        return [], None
    version, manifest_ref = found
    manifest = json.loads(await fetch(deps.artifacts, manifest_ref, "previous manifest"))
    rows = []
    for name in ("train", "validation"):
        ref = ArtifactRef.model_validate(manifest["files"][name])
        rows.extend(parse_chat_rows(await fetch(deps.artifacts, ref, f"previous {name}")))
    previous = {
        "dataset_version": version,
        "manifest": manifest_ref.model_dump(mode="json"),
        "sources": manifest["lineage"]["sources"],
    }
    return rows, previous


# --- publishing ---------------------------------------------------------------------------------


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
) -> None:
    version = publication.manifest.sha256
    await repo.add_rejections(uow.session, run.id, new_rejections, version)
    await repo.add_dataset(
        uow.session, run, publication.manifest, publication.train, publication.validation
    )
    run.state, run.finished_at = repo.PUBLISHED, repo.now()
    await uow.publish(
        source.caused(
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
