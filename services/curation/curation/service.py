"""Curation's stage: a synth batch in; a dataset version, a review queue or a failed cycle out.

The stage template (`shared.runtime.stage`) owns the inbox, the heartbeat, the one-transaction
commit and giving up (dead letter + cycle.failed naming "curation"). What is curation's own:

- `prepare` reads and checks every input: the spec, the batch, the golden set, the dataset
  this iteration extends. Missing, corrupt (sha256) or unparsable is a PermanentError on the
  first delivery; single bad rows of a readable batch are rejections, not errors.
- `work` runs the pipeline in a thread, then writes the draft and, when no row needs review,
  the dataset's artifacts. They are content-addressed: a retried work writes the same bytes.
- `record` writes the run's rows and returns the answer: DatasetPublished, CycleFailed when no
  row survived (a normal outcome, not a give-up), or nothing while reviews are pending.

Publishing (the artifacts, the dataset row, the answer) lives in `publish.py`, shared with
publishing after review (`review.decide_review`, which is not a bus stage).
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import asdict, dataclass, replace
from functools import partial
from typing import Any

from shared.artifacts import ArtifactError, AsyncArtifactStore
from shared.bus.errors import PermanentError
from shared.db import Database, UnitOfWork
from shared.events.base import ArtifactRef, Event
from shared.events.catalog import SynthCompleted
from shared.runtime.stage import Stage, StageRun
from shared.tasks import TaskSpec, TaskSpecError, spec_from_json

from . import repository as repo
from .decontam import GoldenIndex
from .domain import (
    FEEDBACK_PREFIX,
    Draft,
    Judge,
    Options,
    Rejection,
    Row,
    curate,
)
from .filters import QualityRules
from .publish import Publication, build_publication, cycle_failed, record_publication
from .rows import NotJsonl, parse_chat_rows, parse_rows
from .settings import CurationSettings


@dataclass
class Deps:
    db: Database
    artifacts: AsyncArtifactStore
    settings: CurationSettings
    # PlatformSettings.allowed_teacher_hosts (DISTILLERY_ALLOWED_TEACHER_HOSTS), for the judge.
    operator_hosts: Sequence[str] = ()


@dataclass(frozen=True)
class Inputs:
    """What prepare read and checked; everything the pipeline needs, nothing left to fetch."""

    event: SynthCompleted
    spec: TaskSpec
    options: Options
    rows: list[Row]
    malformed: list[Rejection]
    golden: GoldenIndex
    carried: list[Row]  # the rows of the dataset this iteration extends
    previous: dict[str, Any] | None  # its lineage, for the manifest
    judge: Judge | None


@dataclass(frozen=True)
class Curated:
    draft: Draft
    draft_ref: ArtifactRef
    publication: Publication | None  # None: no row survived, or rows wait for review


def stages(deps: Deps) -> list[Stage]:
    return [
        Stage(
            "curation",
            SynthCompleted,
            prepare=partial(prepare, deps),
            work=partial(work, deps),
            record=record,
            description="synth.completed -> dataset.published | cycle.failed | review queue",
        )
    ]


# --- the stage ---------------------------------------------------------------------------------


async def prepare(deps: Deps, event: SynthCompleted, run: StageRun) -> Inputs:
    spec = await load_spec(deps.artifacts, event.task_spec)
    options = options_for(spec, deps.settings)
    try:
        golden_ref = spec.ref("golden_set")
    except ValueError as exc:
        raise PermanentError(f"task spec {event.task_spec.uri}: {exc}") from exc
    batch = await fetch(deps.artifacts, event.batch, "synth batch")
    golden = await fetch(deps.artifacts, golden_ref, "golden set")
    rows, malformed = await run.thread(read_batch, batch, event.batch)
    if event.feedback_dataset is not None:
        data = await fetch(deps.artifacts, event.feedback_dataset, "feedback dataset")
        more, bad = await run.thread(read_feedback, data, event.feedback_dataset)
        rows, malformed = [*rows, *more], [*malformed, *bad]
    index = await run.thread(golden_index, golden, golden_ref, options.decontamination_ngram)
    carried, previous = await previous_dataset(deps, event)
    return Inputs(
        event=event,
        spec=spec,
        options=options,
        rows=rows,
        malformed=malformed,
        golden=index,
        carried=carried,
        previous=previous,
        judge=judge_for(spec, options, deps.settings, deps.operator_hosts),
    )


async def work(deps: Deps, job: Inputs, run: StageRun) -> Curated:
    # Seconds of CPU on big batches, and a teacher call per row when the judge is on: a thread
    # keeps heartbeats, other deliveries and the relay running meanwhile.
    draft = await run.thread(pipeline, job)
    body = await run.thread(draft.to_json)
    draft_ref = await deps.artifacts.put_bytes(body, media_type="application/json")
    publication = None
    if draft.kept and not draft.review:
        publication = await build_publication(deps.artifacts, job.spec, job.event, draft, [])
    return Curated(draft, draft_ref, publication)


async def record(uow: UnitOfWork, job: Inputs, result: Curated) -> list[Event]:
    event, draft, publication = job.event, result.draft, result.publication
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
        draft=result.draft_ref,
        state=state,
    )
    if publication is not None:
        return [await record_publication(uow, run, event, publication, publication.rejected)]
    await repo.add_rejections(uow.session, run.id, draft.rejected, None)
    if state == repo.FAILED:
        return [cycle_failed(event, draft.input_rows, draft.rejected)]
    queued = set(draft.review)
    await repo.add_reviews(uow.session, run.id, [r for r in draft.kept if r.id in queued])
    return []


def pipeline(job: Inputs) -> Draft:
    draft = curate(job.rows, rules_for(job.spec), job.golden, job.options, job.carried, job.judge)
    rejected = sorted([*job.malformed, *draft.rejected], key=lambda r: (r.reason, r.row_id))
    event = job.event
    source: dict[str, Any] = {
        "kind": "synth",
        "batch": event.batch.model_dump(mode="json"),
        "cycle_id": str(event.cycle_id),
        "iteration": event.iteration,
        "task_version": event.task_version,
        "examples": event.examples,
    }
    if event.feedback_dataset is not None:
        source["feedback_dataset"] = event.feedback_dataset.model_dump(mode="json")
        source["feedback_rows"] = sum(1 for r in job.rows if r.id.startswith(FEEDBACK_PREFIX))
    return replace(
        draft,
        rejected=rejected,
        input_rows=draft.input_rows + len(job.malformed),
        source=source,
        previous=job.previous,
        options=asdict(job.options),
    )


# --- reading and checking inputs ---------------------------------------------------------------


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
        shingle_chars=settings.shingle_chars,
        detail_weight=settings.detail_weight,
        minhash_seed=settings.minhash_seed,
    )


def rules_for(spec: TaskSpec) -> QualityRules:
    c = spec.curation
    return QualityRules(c.min_chars, c.max_chars, spec.output_schema, spec.negatives.expected)


def judge_for(
    spec: TaskSpec, options: Options, settings: CurationSettings, operator_hosts: Sequence[str]
) -> Judge | None:
    """The optional LLM judge: the spec's teacher grades each kept row (off by default)."""
    if not options.judge:
        return None
    from .judge import TeacherJudge

    return TeacherJudge(spec, settings.judge_max_rows, operator_hosts=operator_hosts)


async def fetch(artifacts: AsyncArtifactStore, ref: ArtifactRef, what: str) -> bytes:
    try:
        return await artifacts.get_bytes(ref)
    except ArtifactError as exc:  # missing, corrupt, or from another store: retrying cannot help
        detail = str(exc)
        # The store's messages name the artifact already; the reason is read by people.
        where = "" if ref.uri in detail else f" {ref.uri}"
        raise PermanentError(f"{what}{where}: {detail}") from exc


async def load_spec(artifacts: AsyncArtifactStore, ref: ArtifactRef) -> TaskSpec:
    try:
        return spec_from_json(await fetch(artifacts, ref, "task spec"))
    except TaskSpecError as exc:
        raise PermanentError(f"task spec {ref.uri}: {exc}") from exc


def _parse(data: bytes, ref: ArtifactRef, what: str) -> tuple[list[Row], list[Rejection]]:
    try:
        return parse_rows(data)
    except NotJsonl as exc:
        raise PermanentError(f"{what} {ref.uri} is not JSONL: {exc}") from exc


def read_batch(data: bytes, ref: ArtifactRef) -> tuple[list[Row], list[Rejection]]:
    rows, bad = _parse(data, ref, "synth batch")
    # The prefix gives a row feedback's precedence in dedup: only curation hands it out.
    taken = [r for r in rows if r.id.startswith(FEEDBACK_PREFIX)]
    bad += [
        Rejection(r.id, r.use_case, "malformed", f"id prefix {FEEDBACK_PREFIX!r} is reserved")
        for r in taken
    ]
    return [r for r in rows if not r.id.startswith(FEEDBACK_PREFIX)], bad


def read_feedback(data: bytes, ref: ArtifactRef) -> tuple[list[Row], list[Rejection]]:
    """The feedback-collector's rows, in the synth batch's format. Their ids (and those of
    their malformed lines) are prefixed here, whatever the file says: the prefix is what lets
    a corroborated correction win dedup against a synthetic row of the same input."""
    rows, bad = _parse(data, ref, "feedback dataset")
    return (
        [replace(r, id=f"{FEEDBACK_PREFIX}{r.id}") for r in rows],
        [replace(b, row_id=f"{FEEDBACK_PREFIX}{b.row_id}") for b in bad],
    )


def golden_index(data: bytes, ref: ArtifactRef, n: int) -> GoldenIndex:
    try:
        rows = [json.loads(line) for line in data.decode().splitlines() if line.strip()]
        return GoldenIndex(((str(r["id"]), str(r["input"])) for r in rows), n)
    except (ValueError, KeyError, TypeError) as exc:  # UnicodeDecodeError is a ValueError
        raise PermanentError(f"golden set {ref.uri} is not valid JSONL rows: {exc!r}") from exc


async def previous_dataset(deps: Deps, event: SynthCompleted) -> tuple[list[Row], dict | None]:
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
    try:
        manifest = json.loads(await fetch(deps.artifacts, manifest_ref, "previous manifest"))
        rows = []
        for name in ("train", "validation"):
            ref = ArtifactRef.model_validate(manifest["files"][name])
            rows.extend(parse_chat_rows(await fetch(deps.artifacts, ref, f"previous {name}")))
        sources = manifest["lineage"]["sources"]
    except (ValueError, KeyError, TypeError) as exc:
        raise PermanentError(
            f"previous dataset {version} ({manifest_ref.uri}) is unreadable: {exc!r}"
        ) from exc
    previous = {
        "dataset_version": version,
        "manifest": manifest_ref.model_dump(mode="json"),
        "sources": sources,
    }
    return rows, previous
