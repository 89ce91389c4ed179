"""Publishing a dataset version: its artifacts, its rows and the DatasetPublished answer.

Two callers: the curation stage, when no row needs review, and `review.decide_review` once the
last review of a run is decided (in the CLI's process, not on the bus). Artifacts are
content-addressed and the answer's id derives from the source event, so a publish retried after
a crash writes the same bytes and at most one event.

Rows are rendered with the student prompt and counted with the student's tokenizer (the base
model's own files, from the store) at publication: what is counted is the final row, after PII
scrubbing and review edits, exactly as the trainer will encode it.
"""

from __future__ import annotations

import asyncio
import tempfile
import threading
import uuid
from dataclasses import dataclass, replace
from pathlib import Path

from shared.artifacts import ArtifactError, ArtifactStore, AsyncArtifactStore
from shared.artifacts.paths import UnsafePathError, confined
from shared.bus.errors import PermanentError
from shared.db import UnitOfWork
from shared.events.base import ArtifactRef
from shared.events.catalog import CycleFailed, DatasetPublished, SynthCompleted
from shared.models import ModelFormatError, read_manifest
from shared.tasks import TaskSpec

from . import repository as repo
from .decisions import ReviewDecision, apply_decisions
from .domain import Draft, Rejection, rejection_summary
from .manifest import (
    JSONL,
    MANIFEST_MEDIA_TYPE,
    TokenCounter,
    Window,
    build_manifest,
    render,
)
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
    # Rejected while publishing (longer than student.max_seq_len), not by the pipeline's draft.
    too_long: list[Rejection]


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
    # Answers as the student decodes them (key order, separators): the grammar allows no other.
    final = replace(
        final,
        kept=[replace(r, output=spec.ordered_answer(r.output)) for r in final.kept],
        carried=[replace(r, output=spec.ordered_answer(r.output)) for r in final.carried],
    )
    share = float(draft.options["validation_share"])
    window = await student_window(artifacts, spec)
    rendered = await asyncio.to_thread(render, final, spec.student_prompt, share, window)
    if not rendered.train and not rendered.validation:
        # Every row is too long: publishing an empty dataset would only fail the trainer later.
        raise PermanentError(
            f"no row fits student.max_seq_len {spec.student.max_seq_len}: all "
            f"{len(rendered.too_long)} rows are longer ({rendered.too_long[0].detail})"
        )
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
        manifest,
        refs,
        len(rendered.train),
        len(rendered.validation),
        rendered.rejected,
        rendered.too_long,
    )


_counters: dict[str, TokenCounter] = {}
_counters_lock = threading.Lock()


async def student_window(artifacts: AsyncArtifactStore, spec: TaskSpec) -> Window | None:
    """The student's window, or None when its base model is not imported: that spec cannot be
    trained at all (the trainer refuses it, naming the import), so there is nothing to fit."""
    ref = spec.student.base_model_ref
    if ref is None:
        return None
    count = await asyncio.to_thread(token_counter, artifacts.sync, ref)
    return Window(spec.student.max_seq_len, count, ref.sha256)


def token_counter(store: ArtifactStore, ref: ArtifactRef) -> TokenCounter:
    """Counts a chat row as trainer.data.encode does: the chat template rendered without a
    generation prompt, tokenized without added special tokens. Cached per base model."""
    with _counters_lock:
        if ref.sha256 not in _counters:
            _counters[ref.sha256] = _load_counter(store, ref)
        return _counters[ref.sha256]


def _load_counter(store: ArtifactStore, ref: ArtifactRef) -> TokenCounter:
    from transformers import AutoTokenizer

    try:
        files = read_manifest(store, ref)["files"]
        with tempfile.TemporaryDirectory(prefix="curation-tokenizer-") as tmp:
            for name, raw in files.items():
                if not name.endswith(".safetensors"):  # the weights are not needed to count
                    store.get_file(ArtifactRef.model_validate(raw), confined(Path(tmp), name))
            tokenizer = AutoTokenizer.from_pretrained(tmp, local_files_only=True)
    except (ArtifactError, ModelFormatError, UnsafePathError, OSError, ValueError) as exc:
        raise PermanentError(
            f"student tokenizer (base model sha256:{ref.sha256[:12]}) unusable: {exc}"
        ) from exc

    lock = threading.Lock()  # a fast tokenizer refuses concurrent use from two threads

    def count(messages: list[dict[str, str]]) -> int:
        with lock:
            text = tokenizer.apply_chat_template(messages, tokenize=False)
            return len(tokenizer(text, add_special_tokens=False)["input_ids"])

    return count


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
