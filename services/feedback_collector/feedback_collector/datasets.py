"""Production data -> training data -> the next cycle.

`build_training_data` turns a task's matched feedback into examples (the poisoning guards are
domain.py's). `publish_feedback` is the periodic job after it: when the retrain policy lets
enough new trusted examples start a cycle, it writes every trusted SFT example of the task as
a feedback dataset (JSONL in the synth batch's row format) and commits, in one transaction,
the cycle row, `feedback.dataset.published` and a `cycle.requested` carrying the same
artifact, which synth-data passes to curation with its batch. The trigger is the dataset's
hash, so the same rows never start two cycles, whatever crashes or repeats.
"""

from __future__ import annotations

import asyncio
import json
from datetime import UTC, datetime, timedelta

from shared.events import ArtifactRef, Event
from shared.events.base import utcnow
from shared.events.catalog import CycleRequested, DriftDetected, FeedbackDatasetPublished
from shared.logs import get_logger

from . import repository as repo
from . import repository_cycles as cycles_repo
from . import repository_relabels as relabels_repo
from .cycles import alarm_text, history, request_cycle
from .domain import Build, Feedback, Guards, build, seen_by_client
from .policy import Policy, Reason, decide, fits
from .relabels import queue_relabels, request_relabels
from .service import Deps, rejection_row
from .settings import NAME, FeedbackSettings
from .tuning import task_settings

JSONL = "application/jsonl"
log = get_logger(__name__)


def policy(settings: FeedbackSettings) -> Policy:
    return Policy(
        cooldown=timedelta(seconds=settings.cooldown_s),
        schedule_every=(
            None
            if settings.retrain_every_days is None
            else timedelta(days=settings.retrain_every_days)
        ),
        min_new_examples=settings.min_new_examples,
        max_cycles=settings.max_cycles,
        budget_window=timedelta(days=settings.budget_window_days),
        max_cycle_age=timedelta(days=settings.max_cycle_age_days),
    )


def dataset_rows(examples: list[tuple]) -> bytes:
    """The synth batch's row format (id, use_case, negative, input, output), plus lineage;
    `examples` are (example_id, messages, chosen, trust, request_ids, feedback_ids)."""
    lines = []
    for example_id, messages, chosen, trust, request_ids, feedback_ids in examples:
        user = [m["content"] for m in messages if m["role"] == "user"]
        if not user:
            continue  # nothing a student is asked: not a row curation could use
        row = {
            "id": example_id[:32],
            "use_case": "feedback",
            "negative": False,
            "input": user[-1],
            "output": chosen,
            "lineage": {"trust": trust, "request_ids": request_ids, "feedback_ids": feedback_ids},
        }
        lines.append(json.dumps(row, ensure_ascii=False, sort_keys=True))
    return "".join(f"{line}\n" for line in lines).encode()


async def publish_feedback(deps: Deps, now: datetime | None = None) -> list[Event]:
    """One round of the job for every task with feedback or a reference dataset: examples
    from new feedback, then a cycle if enough new trusted examples are there, else one if
    the task's schedule is due. Returns the events committed. A task that fails is logged and
    retried next round; the others go on."""
    now = now or utcnow()
    async with deps.db.uow() as uow:
        with_feedback = await repo.tasks_with_feedback(uow.session)
        known = [task for task, *_ in await cycles_repo.references(uow.session)]
    sent: list[Event] = []
    for task in sorted({*with_feedback, *known}):
        try:
            settings = await task_settings(deps, task)
            rules = policy(settings)
            if task in with_feedback:
                await build_training_data(deps, task, now)
            sent.extend(await request_relabels(deps, task, settings, now))
            started = await start_cycle(deps, task, rules, now)
            if not started and rules.schedule_every is not None:
                started = await start_cycle(
                    deps, task, rules, now, trigger=schedule_slot(task, rules.schedule_every, now)
                )
            sent.extend(started)
        except Exception as exc:
            log.warning("feedback dataset not built", task=task, error=repr(exc))
    return sent


def schedule_slot(task: str, every: timedelta, now: datetime) -> str:
    """The trigger of the schedule period `now` falls in: the same in every round, replica
    and redelivery of that period, so a period starts at most one cycle."""
    return f"schedule:{task}:{int(now.timestamp() // every.total_seconds())}"


async def start_cycle(
    deps: Deps,
    task: str,
    rules: Policy,
    now: datetime,
    *,
    drift: DriftDetected | None = None,
    trigger: str | None = None,
) -> list[Event]:
    """Start a cycle for `task` when the policy allows, with every trusted example as its
    feedback dataset. The trigger is one of: a drift alarm (`drift`, with its `trigger`); a
    schedule period (a `trigger` from `schedule_slot`); else enough new examples (the trigger
    is then the dataset's hash). Each starts a cycle only for its own reason: new examples
    never start one because the schedule is due, which would spend that dataset's trigger.
    The policy is asked first, so a refused round loads and writes nothing."""
    expect: Reason = "drift" if drift else ("schedule" if trigger else "feedback")
    async with deps.db.uow() as uow:
        asked = await history(uow.session, task, rules, now)
    decision = decide(rules, asked, now, drift=alarm_text(drift))
    if not decision.start or not fits(expect, decision.reason):
        return []
    async with deps.db.uow() as uow:
        rows = await cycles_repo.sft_examples(uow.session, task)
        # Plain values: the unit of work's rollback on exit expires loaded rows.
        examples = [
            (e.example_id, e.messages, e.chosen, e.trust, e.request_ids, e.feedback_ids)
            for e in rows
        ]
        request_ids = sum(len(e.request_ids) for e in rows)
    body = await asyncio.to_thread(dataset_rows, examples)
    ref: ArtifactRef | None = None
    if body and deps.artifacts is not None:
        # Written before the transaction: content-addressed, so a crash or a refusal below
        # leaves at most an unreferenced copy of the same bytes, never a cycle without its rows.
        ref = await deps.artifacts.put_bytes(body, media_type=JSONL)
    if expect == "feedback":
        if ref is None:
            return []
        trigger = f"feedback:{ref.sha256[:40]}"
    if trigger is None:
        raise ValueError("a drift alarm must name its trigger")
    async with deps.db.uow() as uow:
        # Decided again under the task's lock: the first look above took none.
        events = await request_cycle(
            uow, task, rules, trigger=trigger, drift=drift, now=now, feedback=ref, expect=expect
        )
        started = [e for e in events if isinstance(e, CycleRequested)]
        if not started:
            return []
        if ref is not None:
            published = FeedbackDatasetPublished(
                producer=NAME,
                cycle_id=started[0].cycle_id,
                task_name=task,
                dataset=ref,
                examples=body.count(b"\n"),
                request_ids=request_ids,
            )
            events = [published, *events]
        await uow.publish(*events)
        await uow.commit()
    return events


# --- production data -> training data ---


def guards(settings: FeedbackSettings) -> Guards:
    return Guards(
        max_per_user=settings.max_per_user,
        max_per_key=settings.max_per_key,
        min_agreeing_users=settings.min_agreeing_users,
        max_correction_ratio=settings.max_correction_ratio,
    )


async def build_training_data(deps: Deps, task: str, now: datetime | None = None) -> Build:
    """Examples and rejections from the task's unused, matched feedback, in one transaction."""
    now = now or utcnow()
    expiry = now - timedelta(days=deps.settings.pending_feedback_days)
    async with deps.db.uow() as uow:
        rows = await repo.unused_feedback(uow.session, task)
        request_ids = {r.request_id for r in rows}
        traces, teacher = seen_by_client(await repo.traces_for(uow.session, request_ids))
        # A correction the teacher's relabel of that input agrees with is trusted too.
        teacher.update(await relabels_repo.answers(uow.session, request_ids))
        by_id = {r.event_id: r for r in rows}
        result = build(
            traces,
            [_feedback(r) for r in rows],
            guards(deps.settings),
            teacher=teacher,
            expired={r.event_id for r in rows if r.received_at.replace(tzinfo=UTC) < expiry},
        )
        await repo.add_examples(uow.session, [ex.row(task, now) for ex in result.examples])
        await queue_relabels(uow.session, task, result.relabel, traces, rows, now)
        await repo.add_rejections(
            uow.session,
            [
                rejection_row(by_id[r.feedback.event_id], r.reason, r.detail, now)
                for r in result.rejections
            ],
        )
        waiting = {f.event_id for f in result.waiting}
        # Everything else was looked at for good: an example, a rejection, a rating queued
        # for the teacher's relabel, or a rating with nothing to learn from.
        await repo.mark_used(uow.session, [e for e in by_id if e not in waiting], now)
        await uow.commit()
    return result


def _feedback(r) -> Feedback:
    return Feedback(
        event_id=r.event_id,
        request_id=r.request_id,
        rating=r.rating,
        correction=r.correction,
        user_id=r.user_id,
        key_id=r.key_id,
        escalate=r.escalate,
    )
