"""Heavy work in a child process: progress, results, and every way a child can fail."""

from __future__ import annotations

import pytest

from shared.bus import PermanentError, TransientError
from shared.runtime.worker import run_in_worker


async def test_result_and_progress_come_back_in_order():
    seen: list[dict] = []

    async def on_progress(update: dict) -> None:
        seen.append(update)

    result = await run_in_worker(
        "tests.fixtures.worker_jobs:echo", {"steps": 3, "value": "x"}, on_progress=on_progress
    )
    assert result == {"echo": "x"}
    assert seen == [{"step": 0}, {"step": 1}, {"step": 2}]


async def test_permanent_error_crosses_the_process_boundary():
    with pytest.raises(PermanentError, match="the input is wrong"):
        await run_in_worker("tests.fixtures.worker_jobs:refuse", {})


async def test_a_crashed_child_is_a_transient_failure(tmp_path):
    with pytest.raises(TransientError, match="exited with status 137"):
        await run_in_worker("tests.fixtures.worker_jobs:crash", {}, log_path=tmp_path / "w.log")


async def test_an_unknown_target_is_reported():
    with pytest.raises(TransientError, match="ModuleNotFoundError"):
        await run_in_worker("tests.fixtures.nope:fn", {})
