"""Each task's settings: its spec's `monitoring` over the collector's FEEDBACK_* defaults.

The spec is the one the task's drift reference (its latest published dataset) applied, so a
new spec version takes effect with the first dataset made under it. A task without a
reference, or with one recorded before references kept their spec, runs on the defaults.
Specs are content-addressed: each is fetched and parsed once per process.
"""

from __future__ import annotations

from shared.events import ArtifactRef
from shared.tasks.load import spec_from_json
from shared.tasks.spec import Monitoring

from . import repository_cycles as cycles_repo
from .service import Deps
from .settings import FeedbackSettings

_MONITORING: dict[str, Monitoring] = {}  # spec sha256 -> its monitoring section


async def task_settings(deps: Deps, task: str) -> FeedbackSettings:
    """Raises for a spec that cannot be fetched or does not fit (the caller's per-task guard
    logs it and tries again next round)."""
    async with deps.db.uow() as uow:
        raw = (await cycles_repo.reference_specs(uow.session)).get(task)
    if raw is None or deps.artifacts is None:
        return deps.settings
    ref = ArtifactRef.model_validate(raw)
    monitoring = _MONITORING.get(ref.sha256)
    if monitoring is None:
        monitoring = spec_from_json(await deps.artifacts.get_bytes(ref)).monitoring
        if len(_MONITORING) > 256:  # a long-lived process with many spec versions
            _MONITORING.clear()
        _MONITORING[ref.sha256] = monitoring
    return deps.settings.for_task(monitoring)
