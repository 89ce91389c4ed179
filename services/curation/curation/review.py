"""The review use case `distillery review` runs: record one decision; after the last, publish.

The decision and the publication share one transaction: the run row is locked first, so two
reviewers deciding the last two items of a run one after the other see each other's decision,
and exactly one of them publishes. The event goes into the outbox with producer "curation"; the
curation service's relay sends it, now or when it next runs.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

from shared.artifacts import AsyncArtifactStore
from shared.db import Database, UnitOfWork
from shared.events.catalog import SynthCompleted
from shared.tasks import TaskSpec

from . import repository as repo
from .decisions import Decision, apply_decisions, edited_output
from .domain import Draft
from .models import CurationRun
from .publish import build_publication, cycle_failed, record_publication
from .service import fetch, load_spec, rules_for


class ReviewError(ValueError):
    """A decision that cannot be taken: unknown id, already decided, or an invalid edit."""


@dataclass(frozen=True)
class DecisionOutcome:
    review_id: int
    status: str
    pending_left: int
    published: str | None = None  # dataset version, once the last decision published it
    failed: str | None = None  # CycleFailed reason, when review rejected every new row


async def decide_review(
    db: Database,
    artifacts: AsyncArtifactStore,
    review_id: int,
    decision: Decision,
    *,
    output: str | None = None,
    reason: str | None = None,
    reviewer: str | None = None,
) -> DecisionOutcome:
    async with db.uow() as uow:
        item = await repo.review(uow.session, review_id)
        if item is None:
            raise ReviewError(f"no review item {review_id}")
        run = await repo.lock_run(uow.session, item.run_id)
        assert run is not None
        await uow.session.refresh(item)  # another reviewer may have decided it while we waited
        if item.status != repo.PENDING:
            raise ReviewError(f"review {review_id} is already {item.status}")
        source = SynthCompleted.model_validate_json(run.source_event)
        spec = await load_spec(artifacts, source.task_spec)
        if decision == "edited":
            try:
                item.edited_output = edited_output(output or "", item.negative, rules_for(spec))
            except ValueError as exc:
                raise ReviewError(f"edited output rejected: {exc}") from None
        item.status, item.reason = decision, reason
        item.decided_by, item.decided_at = reviewer, repo.now()
        await uow.session.flush()
        left = await repo.pending_count(uow.session, run.id)
        outcome = DecisionOutcome(review_id, decision, left)
        if left == 0:
            outcome = await _publish_reviewed(uow, artifacts, run, source, spec, outcome)
        await uow.commit()
    return outcome


async def _publish_reviewed(
    uow: UnitOfWork,
    artifacts: AsyncArtifactStore,
    run: CurationRun,
    source: SynthCompleted,
    spec: TaskSpec,
    outcome: DecisionOutcome,
) -> DecisionOutcome:
    draft = Draft.from_json(await fetch(artifacts, run.draft_ref(), "curation draft"))
    decisions = await repo.decisions(uow.session, run.id)
    publication = await build_publication(artifacts, spec, source, draft, decisions)
    if publication is None:
        final = apply_decisions(draft, decisions)
        new = [r for r in final.rejected if r.reason == "review_rejected"]
        await repo.add_rejections(uow.session, run.id, new, None)
        run.state, run.finished_at = repo.FAILED, repo.now()
        failed = cycle_failed(source, draft.input_rows, final.rejected)
        await uow.publish(failed)
        return replace(outcome, failed=failed.reason)
    # Decided now, so not yet in the table: the reviewer's rejections and the rows that no
    # longer fit the student's window after their review edits.
    new = [r for r in publication.rejected if r.reason == "review_rejected"]
    new += publication.too_long
    await uow.publish(await record_publication(uow, run, source, publication, new))
    return replace(outcome, published=publication.manifest.sha256)
