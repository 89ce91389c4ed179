"""Which model server serves a deployment's candidate: the engine it was measured on.

- `llama.cpp` (a GGUF variant): llama-cpp-python's server on the file, fetched by sha256.
- `vllm` (a quantizer variant for vLLM: a stored model directory whose quantization config
  vLLM detects): `vllm serve` on the directory, fetched file by file, each verified, as a
  local process on this machine (DEPLOYER_VLLM_COMMAND starts the CLI).
- `adapter` (a task without quantization: the LoRA adapter as evaluated): `vllm serve` on the
  base model with the adapter as a LoRA module, requests naming the adapter. The base is the
  one the evaluation report names (`base_model`), and parity compares with the replies the
  evaluator recorded (`replies["adapter"]`).

Anything else is a reason, not a server: a kind nothing here serves (a transformers model), or
a vLLM candidate where vLLM's CLI is not installed (an adapter has no CPU server here: the
llama.cpp path serves GGUF variants, which a task gets by asking for quantization). The
controller rolls such a candidate back with the reason, so its cycle ends instead of waiting
in shadow for a server that never comes.
"""

from __future__ import annotations

import asyncio
import json
import shlex
import shutil
from functools import partial
from pathlib import Path

from pydantic import ValidationError

from shared.artifacts import ArtifactNotFound, AsyncArtifactStore, IntegrityError
from shared.events.base import ArtifactRef
from shared.models.store import fetch_model_dir

from . import repository as repo
from .llamacpp import LlamaCppServer, LlamaCppSpec
from .servers import ModelServer
from .settings import DeployerSettings
from .vllm import VllmServer, VllmSpec

# What no later pass can fix; ModelFormatError and a report that is not JSON are ValueErrors.
PERMANENT = (ArtifactNotFound, IntegrityError, KeyError, TypeError, ValueError, ValidationError)
LORA_RANKS = (8, 16, 32, 64, 128, 256, 320, 512)  # the max_lora_rank values vLLM accepts


def unservable(kind: str) -> str:
    return (
        f"no model server for a {kind!r} candidate: this deployer's control loop starts "
        "llama.cpp servers for GGUF variants and vLLM servers for vLLM variants and adapters "
        "(a transformers fallback is not built; services/deployer/README.md)"
    )


def no_vllm(kind: str, command: list[str]) -> str:
    return (
        f"no vLLM here to serve a {kind!r} candidate: {command[0]!r} (DEPLOYER_VLLM_COMMAND) "
        "is not an executable on this machine; vLLM is the gpu extra (pip install -e '.[gpu]') "
        "and needs a GPU"
    )


async def server_for(
    deployment: repo.Deployment,
    artifacts: AsyncArtifactStore,
    settings: DeployerSettings,
    work_dir: Path,
) -> ModelServer | str:
    """The server for the candidate, not started yet; or why there is none."""
    ref, kind = deployment.candidate, deployment.candidate_kind
    name = f"{deployment.task_name}-{ref.sha256[:12]}"
    if kind == "llama.cpp":
        gguf = work_dir / "models" / f"{ref.sha256}.gguf"
        if not gguf.exists():  # get_file checks the sha256 before the file is in place
            await artifacts.get_file(ref, gguf)
        spec = LlamaCppSpec(
            gguf, served_name=name, n_ctx=settings.llama_n_ctx, n_threads=settings.llama_threads
        )
        return LlamaCppServer(spec, work_dir / "logs")
    if kind not in ("vllm", "adapter"):
        return unservable(kind)
    executable = shlex.split(settings.vllm_command)
    if shutil.which(executable[0]) is None:
        return no_vllm(kind, executable)
    fetch = partial(_fetch, artifacts, work_dir / "models")
    adapters: dict[str, str] = {}
    try:
        if kind == "vllm":
            model, rank = await fetch(ref), 0
        else:
            report = await _report(artifacts, deployment)
            base = ArtifactRef.model_validate(report["base_model"])
            model, adapter = await fetch(base), await fetch(ref)
            adapters, rank = {name: str(adapter)}, _rank(adapter)
    except PERMANENT as exc:
        # A missing or corrupt artifact or report stays so: retrying every pass would not serve
        # it. A store that is down raises on, and the next pass tries again.
        return f"the {kind} candidate cannot be fetched: {exc!r}"[:2000]
    spec = VllmSpec(
        model=str(model),
        served_name=f"{name}-base" if adapters else name,
        adapters=adapters,
        # A merged, quantized checkpoint has no adapter riding on it; an adapter is one module.
        max_loras=len(adapters),
        max_lora_rank=next((r for r in LORA_RANKS if r >= rank), LORA_RANKS[-1]),
        max_model_len=settings.vllm_max_model_len,
        gpu_memory_utilization=settings.vllm_gpu_memory_utilization,
    )
    return VllmServer(spec, work_dir / "logs", settings.vllm_start_timeout_s, executable=executable)


async def _fetch(artifacts: AsyncArtifactStore, models: Path, ref: ArtifactRef) -> Path:
    """A stored model directory (weights, or an adapter) under its manifest's sha256."""
    return await asyncio.to_thread(fetch_model_dir, artifacts.sync, ref, models / ref.sha256)


async def _report(artifacts: AsyncArtifactStore, deployment: repo.Deployment) -> dict:
    if deployment.measured is None:
        raise ValueError("no report is recorded for this deployment")
    return json.loads(await artifacts.get_bytes(deployment.measured))


def _rank(adapter: Path) -> int:
    """The LoRA rank in the adapter's config (peft's adapter_config.json), 0 if it has none."""
    try:
        return int(json.loads((adapter / "adapter_config.json").read_text()).get("r", 0))
    except (OSError, ValueError, TypeError):
        return 0
