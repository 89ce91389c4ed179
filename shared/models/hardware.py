"""What the CPU can do for model math; shared by every service that runs a model."""

from __future__ import annotations


def cpu_has_bf16() -> bool:
    """AMX or AVX512-BF16: bf16 matmuls run about twice as fast as fp32 there.

    Without them (AVX2 only) bf16 is emulated and measured several times *slower* than fp32.
    """
    import torch

    return bool(torch.cpu._is_amx_tile_supported() or torch.cpu._is_avx512_bf16_supported())
