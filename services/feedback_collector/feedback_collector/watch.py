"""The drift watch: every `drift_every_s`, each task's live traffic against its reference.

- Input drift: the latest `drift_window` live inputs (the last user message of each request a
  client was answered on) against up to `drift_reference_rows` inputs of the task's latest
  published dataset's train split, embedded with all-MiniLM-L6-v2 (embed.py), by the MMD
  permutation test (drift.py) at `drift_alpha`. Windows smaller than `drift_min_window` are not
  tested: a test that cannot measure must not pass for one that did.
- Quality drift: a Bernoulli CUSUM over the latest `quality_window` live requests in order,
  a request being bad when it failed, was rated negative or escalated, tuned from
  `quality_baseline` to `quality_shifted` with a threshold for `quality_false_alarm_run`
  requests between false alarms.

Only traffic since the reference was published and since the task's last cycle started or
ended is read, so the cycle an alarm starts does not see that alarm's window again, and
traffic the old model served while a cycle ran is not held against the new one. An alarm
becomes `drift.detected` and `cycle.requested` through the retrain policy
(datasets.start_cycle: every trusted feedback example rides along); its trigger names the
window's end, so re-reading the same window (a restart, a round with no new traffic) starts
nothing twice.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
from collections.abc import Callable, Sequence
from datetime import datetime

import numpy as np

from shared.events import ArtifactRef, Event
from shared.events.base import utcnow
from shared.events.catalog import DriftDetected
from shared.logs import get_logger
from shared.text.pii import scrub

from . import repository_cycles as cycles_repo
from .datasets import policy, start_cycle
from .domain import is_negative
from .drift import Cusum, mmd_test
from .service import Deps, as_utc
from .settings import NAME, FeedbackSettings
from .tuning import task_settings

log = get_logger(__name__)

Embed = Callable[[Sequence[str]], np.ndarray]
EVIDENCE = 3


def last_user(messages: list[dict]) -> str | None:
    found = [m.get("content") for m in messages if m.get("role") == "user"]
    return found[-1] if found and isinstance(found[-1], str) else None


def reference_inputs(train: bytes, n: int) -> list[str]:
    """Up to `n` user inputs of a published train split (chat rows), the same ones every time:
    the rows whose input hashes lowest."""
    texts = []
    for line in train.decode("utf-8").splitlines():
        if line.strip():
            text = last_user(json.loads(line).get("messages", []))
            if text:
                texts.append(text)
    return sorted(set(texts), key=lambda t: hashlib.sha256(t.encode()).hexdigest())[:n]


def quality_alarm(
    outcomes: list[tuple], settings: FeedbackSettings
) -> tuple[Cusum, int, int] | None:
    """(the CUSUM, index of the alarming request, bad requests up to it), or None."""
    cusum = Cusum(
        settings.quality_baseline,
        settings.quality_shifted,
        Cusum.threshold_for(settings.quality_false_alarm_run),
    )
    bad = 0
    for i, (_, error, rating, escalate) in enumerate(outcomes):
        is_bad = bool(error) or is_negative(rating) or bool(escalate)  # as stats.py counts
        bad += is_bad
        if cusum.update(is_bad):
            return cusum, i, bad
    return None


def farthest(reference: np.ndarray, window: np.ndarray, texts: list[str], k: int) -> list[str]:
    """The `k` window inputs least like any reference input (embeddings are unit length), PII
    scrubbed and cut short: the alarm's evidence."""
    nearest = (window @ reference.T).max(axis=1)
    out = []
    for i in np.argsort(nearest)[:k]:
        text, _ = scrub(texts[int(i)])
        out.append(text[:500])
    return out


class Watch:
    """Keeps the reference embeddings per dataset version between rounds."""

    def __init__(self, deps: Deps, embed: Embed | None = None) -> None:
        self.deps = deps
        self._embed = embed
        self._references: dict[str, tuple[str, np.ndarray]] = {}  # task -> (version, rows)

    def embed(self, texts: Sequence[str]) -> np.ndarray:
        if self._embed is None:
            from .embed import embed  # torch and the model load on the first test only

            self._embed = embed
        return self._embed(texts)

    async def run_once(self, now: datetime | None = None) -> list[Event]:
        now = now or utcnow()
        async with self.deps.db.uow() as uow:
            refs = await cycles_repo.references(uow.session)
        sent: list[Event] = []
        for task, version, train, published_at in refs:
            try:
                sent.extend(await self._task(task, version, train, as_utc(published_at), now))
            except Exception as exc:  # one task's missing artifact must not blind the others
                log.warning("drift not tested", task=task, error=repr(exc))
        return sent

    async def _task(
        self, task: str, version: str, train: dict, published_at: datetime, now: datetime
    ) -> list[Event]:
        s = await task_settings(self.deps, task)
        async with self.deps.db.uow() as uow:
            cycles = await cycles_repo.cycles(uow.session, task)
            # Nothing from before the reference or a cycle's start or end: traffic the model
            # served while a cycle ran is not held against what that cycle put live.
            moments = [c.requested_at for c in cycles] + [c.finished_at for c in cycles]
            since = max([published_at, *(as_utc(m) for m in moments if m)])
            outcomes = await cycles_repo.outcomes(uow.session, task, since, s.quality_window)
            inputs = await cycles_repo.recent_inputs(uow.session, task, since, s.drift_window)
        alarm = await asyncio.to_thread(self._quality, task, outcomes, s)
        alarm = alarm or await self._input(task, version, train, inputs, s)
        if alarm is None:
            return []
        trigger = f"drift:{task}:{alarm.kind}:{alarm.window_end}"
        return await start_cycle(self.deps, task, policy(s), now, drift=alarm, trigger=trigger)

    def _quality(
        self, task: str, outcomes: list[tuple], s: FeedbackSettings
    ) -> DriftDetected | None:
        found = quality_alarm(outcomes, s)
        if found is None:
            return None
        cusum, i, bad = found
        return DriftDetected(
            producer=NAME,
            task_name=task,
            kind="quality",
            score=cusum.score,
            threshold=cusum.threshold,
            window_start=as_utc(outcomes[0][0]).isoformat(),
            window_end=as_utc(outcomes[i][0]).isoformat(),
            window_size=i + 1,
            evidence=[
                f"{bad} of {i + 1} live requests bad (failed, rated negative or escalated) "
                f"against a baseline of {s.quality_baseline:.0%}"
            ],
        )

    async def _input(
        self, task: str, version: str, train: dict, inputs: list[tuple], s: FeedbackSettings
    ) -> DriftDetected | None:
        texts = [t for t in (last_user(m) for m, _ in inputs) if t]
        if len(texts) < s.drift_min_window or self.deps.artifacts is None:
            return None
        known = self._references.get(task)
        if known is not None and known[0] == version:
            reference = known[1]
        else:
            body = await self.deps.artifacts.get_bytes(ArtifactRef.model_validate(train))
            rows = reference_inputs(body, s.drift_reference_rows)
            if len(rows) < 2:
                return None
            reference = await asyncio.to_thread(self.embed, rows)
            self._references[task] = (version, reference)
        window = await asyncio.to_thread(self.embed, texts)
        result = await asyncio.to_thread(
            mmd_test, reference, window, alpha=s.drift_alpha, permutations=s.drift_permutations
        )
        if not result.drifted:
            return None
        return DriftDetected(
            producer=NAME,
            task_name=task,
            kind="input",
            score=result.statistic,
            threshold=result.threshold,
            window_start=as_utc(inputs[0][1]).isoformat(),
            window_end=as_utc(inputs[-1][1]).isoformat(),
            window_size=len(texts),
            evidence=farthest(reference, window, texts, EVIDENCE),
        )
