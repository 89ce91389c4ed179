"""Each task's spec as the collector knows it: the one its drift reference (its latest
published dataset) applied. Its `monitoring` section over the FEEDBACK_* defaults gives the
task's settings; its output schema, the schema-valid test of the task's replies.

A new spec version takes effect with the first dataset made under it. A task without a
reference, or with one recorded before references kept their spec, runs on the defaults.
Specs are content-addressed: each is fetched and parsed once per process.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from shared.events import ArtifactRef
from shared.logs import get_logger
from shared.tasks.load import spec_from_json
from shared.tasks.spec import TaskSpec

from . import repository_cycles as cycles_repo
from .settings import FeedbackSettings

if TYPE_CHECKING:
    from .service import Deps

log = get_logger(__name__)
_SPECS: dict[str, TaskSpec] = {}  # spec sha256 -> the spec


async def task_spec(deps: Deps, task: str) -> TaskSpec | None:
    """Raises for a spec that cannot be fetched or parsed (the caller's per-task guard logs it
    and tries again next round)."""
    async with deps.db.uow() as uow:
        raw = (await cycles_repo.reference_specs(uow.session)).get(task)
    if raw is None or deps.artifacts is None:
        return None
    ref = ArtifactRef.model_validate(raw)
    spec = _SPECS.get(ref.sha256)
    if spec is None:
        spec = spec_from_json(await deps.artifacts.get_bytes(ref))
        if len(_SPECS) > 256:  # a long-lived process with many spec versions
            _SPECS.clear()
        _SPECS[ref.sha256] = spec
    return spec


async def task_settings(deps: Deps, task: str) -> FeedbackSettings:
    spec = await task_spec(deps, task)
    if spec is None:
        return deps.settings
    try:
        return deps.settings.for_task(spec.monitoring)
    except ValueError as exc:
        # One bound set in the spec against the operator's other (baseline vs shift): the
        # quality pair falls back to the operator's, the rest of the spec still holds.
        log.error(
            "task spec's quality drift bounds do not fit; using FEEDBACK_QUALITY_*",
            task=task,
            error=str(exc),
        )
        pair = {"quality_baseline": None, "quality_shifted": None}
        return deps.settings.for_task(spec.monitoring.model_copy(update=pair))
