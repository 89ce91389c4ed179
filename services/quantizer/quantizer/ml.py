"""The recipe: merge the adapter into its base and verify it, convert to GGUF, quantize.

torch, transformers, peft and llama_cpp are imported inside functions: the service process
imports this module's names without paying for them; the worker does the work.
"""

from __future__ import annotations

import ctypes
import json
import os
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path

from shared.bus.errors import PermanentError

# llama.cpp's file types (llama.h, enum llama_ftype) for the schemes domain.plan names.
FTYPES = {"Q8_0": 7, "Q4_K_M": 15}


class MergeError(PermanentError):
    """The adapter cannot be applied to its base, or the merged model does not match it."""


class ConversionError(PermanentError):
    """llama.cpp could not convert or quantize the merged model."""


def architectures(model_dir: Path) -> list[str]:
    config = json.loads((Path(model_dir) / "config.json").read_text())
    return list(config.get("architectures") or [])


def supported_architectures(converter: Path) -> set[str]:
    """The HF architectures llama.cpp's converter registers (`--print-supported-models`)."""
    if not Path(converter).is_file():
        raise ConversionError(
            f"llama.cpp's converter is not at {converter}; `make setup` unpacks it there "
            "(QUANTIZER_CONVERTER points elsewhere)"
        )
    out = subprocess.run(
        [sys.executable, str(converter), "--print-supported-models"],
        capture_output=True,
        text=True,
        check=False,
        timeout=300,
    )
    if out.returncode != 0:
        raise ConversionError(f"converter failed to list models: {out.stderr[-2000:]}")
    return {line.strip().lstrip("- ").strip() for line in (out.stdout + out.stderr).splitlines()}


def merge(
    base: Path, adapter: Path, dest: Path, probe_prompts: Sequence[str], tolerance: float
) -> float:
    """Merge (peft merge_and_unload), save safetensors with the base's tokenizer, reload the
    saved copy and compare its logits with base+adapter on `probe_prompts`: the largest
    absolute difference, which must be within `tolerance`. Returns it."""
    import torch
    from peft import PeftModel
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(str(base))
    model = AutoModelForCausalLM.from_pretrained(str(base), torch_dtype=torch.float32)
    try:
        peft_model = PeftModel.from_pretrained(model, str(adapter))
    except Exception as exc:  # peft raises many types for a bad adapter; all are permanent
        raise MergeError(
            f"adapter does not load onto its base: {type(exc).__name__}: {exc}"
        ) from exc
    peft_model.eval()
    encoded = [tokenizer(p, return_tensors="pt", add_special_tokens=False) for p in probe_prompts]
    with torch.no_grad():
        expected = [peft_model(**e).logits for e in encoded]
        merged = peft_model.merge_and_unload()
    merged.save_pretrained(str(dest), safe_serialization=True)
    tokenizer.save_pretrained(str(dest))
    reloaded = AutoModelForCausalLM.from_pretrained(str(dest), torch_dtype=torch.float32)
    reloaded.eval()
    with torch.no_grad():
        diff = max(
            float((reloaded(**e).logits - want).abs().max())
            for e, want in zip(encoded, expected, strict=True)
        )
    if not diff <= tolerance:  # NaN fails too
        raise MergeError(
            f"merged model differs from base+adapter by {diff:.3g} (tolerance {tolerance:g})"
        )
    return diff


def convert_f16(converter: Path, model_dir: Path, dest: Path, timeout: float = 3600) -> Path:
    """HF safetensors -> GGUF F16 with llama.cpp's converter: weights, tokenizer and the chat
    template travel in the one file, so the served prompt is the evaluated one. A model whose
    only tokenizer is a sentencepiece-style tokenizer.json (one imported from a GGUF) first
    gets the `tokenizer.model` the converter reads (shared/models/spm.py)."""
    from shared.models import spm

    spm.ensure(model_dir)
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    out = subprocess.run(
        [
            sys.executable,
            str(converter),
            str(model_dir),
            "--outtype",
            "f16",
            "--outfile",
            str(dest),
        ],
        capture_output=True,
        text=True,
        check=False,
        timeout=timeout,
        env=env,
    )
    if out.returncode != 0 or not dest.is_file():
        raise ConversionError(f"GGUF conversion failed: {(out.stderr or out.stdout)[-3000:]}")
    return dest


def quantize(src: Path, dest: Path, scheme: str, threads: int) -> Path:
    import llama_cpp

    params = llama_cpp.llama_model_quantize_default_params()
    params.ftype = FTYPES[scheme]
    params.nthread = threads
    code = llama_cpp.llama_model_quantize(
        str(src).encode(), str(dest).encode(), ctypes.byref(params)
    )
    if code != 0 or not dest.is_file():
        raise ConversionError(f"llama.cpp could not quantize to {scheme} (status {code})")
    return dest
