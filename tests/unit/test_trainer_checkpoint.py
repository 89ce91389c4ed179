"""Resume state goes through safetensors and JSON only, and comes back exactly."""

from __future__ import annotations

import random

import numpy as np
import pytest
import torch

from trainer.checkpoint import (
    UnsafeCheckpoint,
    completed_checkpoints,
    latest_checkpoint,
    mark_complete,
    optimizer_from_files,
    optimizer_to_files,
    refuse_pickles,
    rng_from_files,
    rng_to_files,
)


def test_adamw_state_round_trips_through_safetensors(tmp_path):
    torch.manual_seed(0)
    model = torch.nn.Linear(4, 3)
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3, betas=(0.8, 0.99))
    for _ in range(3):
        model(torch.randn(2, 4)).sum().backward()
        optimizer.step()
    optimizer_to_files(optimizer.state_dict(), tmp_path)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["optimizer.json", "optimizer.safetensors"]

    fresh = torch.optim.AdamW(model.parameters(), lr=1e-3)
    fresh.load_state_dict(optimizer_from_files(tmp_path))
    saved, loaded = optimizer.state_dict(), fresh.state_dict()
    assert list(loaded["param_groups"][0]["betas"]) == [0.8, 0.99]
    for index, entry in saved["state"].items():
        for key, value in entry.items():
            assert torch.equal(loaded["state"][index][key], value)


def test_random_states_round_trip(tmp_path):
    random.seed(1)
    np.random.seed(2)
    torch.manual_seed(3)
    rng_to_files(tmp_path)
    expected = (random.random(), np.random.rand(), torch.rand(1).item())
    random.seed(9)
    np.random.seed(9)
    torch.manual_seed(9)
    assert rng_from_files(tmp_path)
    assert (random.random(), np.random.rand(), torch.rand(1).item()) == expected


def test_only_marked_checkpoints_count_and_pickles_are_refused(tmp_path):
    for step in (2, 4, 6):
        (tmp_path / f"checkpoint-{step}").mkdir()
    mark_complete(tmp_path / "checkpoint-2", {"step": 2})
    mark_complete(tmp_path / "checkpoint-4", {"step": 4})
    # checkpoint-6: a worker killed mid-save; never resumed from.
    assert [s for s, _ in completed_checkpoints(tmp_path)] == [2, 4]
    assert latest_checkpoint(tmp_path).name == "checkpoint-4"
    (tmp_path / "checkpoint-4" / "optimizer.pt").write_bytes(b"\x80\x04")
    with pytest.raises(UnsafeCheckpoint, match=r"optimizer\.pt"):
        refuse_pickles(tmp_path / "checkpoint-4")
