"""Which precision a CPU gets: measured facts per instruction set (shared/models/hardware.py)."""

from __future__ import annotations

import pytest
import torch

from shared.models import hardware
from trainer.plan import hardware as trainer_hardware


@pytest.mark.parametrize(
    ("amx", "avx512_bf16", "infers", "trains"),
    [
        (True, True, True, True),  # AMX: bf16 ~2x fp32 both ways
        (False, True, True, False),  # AVX512-BF16 alone: a training step measured slower
        (False, False, False, False),  # AVX2: bf16 emulated, several times slower
    ],
)
def test_bf16_where_it_was_measured_faster(monkeypatch, amx, avx512_bf16, infers, trains):
    monkeypatch.setattr(torch.cpu, "_is_amx_tile_supported", lambda: amx)
    monkeypatch.setattr(torch.cpu, "_is_avx512_bf16_supported", lambda: avx512_bf16)
    assert hardware.cpu_has_bf16() is infers
    assert hardware.cpu_trains_bf16() is trains
    # The trainer's plan records the instruction set beside its choice.
    hw = trainer_hardware()
    assert hw["cpu_bf16"] is trains
    assert hw["cpu_isa"] == {"amx": amx, "avx512_bf16": avx512_bf16}
