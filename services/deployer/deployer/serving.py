"""Which model server serves a deployment's candidate: the engine it was measured on.

- `llama.cpp` (a GGUF variant): llama-cpp-python's server on the file, fetched by sha256.
- `vllm` (a quantizer variant for vLLM: a stored model directory whose quantization config
  vLLM detects): `vllm serve` on the directory, fetched file by file, each verified, as a
  local process on this machine (DEPLOYER_VLLM_COMMAND starts the CLI).

Anything else is a reason, not a server: a kind nothing here serves (an adapter of a task
without quantization, a transformers model), or a vLLM variant where vLLM's CLI is not
installed. The controller rolls such a candidate back with the reason, so its cycle ends
instead of waiting in shadow for a server that never comes.
"""

from __future__ import annotations

import asyncio
import shlex
import shutil
from pathlib import Path

from shared.artifacts import AsyncArtifactStore
from shared.models.store import fetch_model_dir

from . import repository as repo
from .llamacpp import LlamaCppServer, LlamaCppSpec
from .servers import ModelServer
from .settings import DeployerSettings
from .vllm import VllmServer, VllmSpec

SERVED_KINDS = ("llama.cpp", "vllm")


def unservable(kind: str) -> str:
    return (
        f"no model server for a {kind!r} candidate: this deployer's control loop starts "
        "llama.cpp servers for GGUF variants and vLLM servers for vLLM variants (an adapter "
        "served by itself and a transformers fallback are not built; "
        "services/deployer/README.md)"
    )


def no_vllm(command: list[str]) -> str:
    return (
        f"no vLLM here to serve a 'vllm' candidate: {command[0]!r} (DEPLOYER_VLLM_COMMAND) is "
        "not an executable on this machine; vLLM is the gpu extra (pip install -e '.[gpu]') "
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
    if kind == "vllm":
        executable = shlex.split(settings.vllm_command)
        if shutil.which(executable[0]) is None:
            return no_vllm(executable)
        model = await asyncio.to_thread(
            fetch_model_dir, artifacts.sync, ref, work_dir / "models" / ref.sha256
        )
        spec = VllmSpec(
            model=str(model),
            served_name=name,
            max_loras=0,  # a merged, quantized checkpoint: no adapter rides on it
            max_model_len=settings.vllm_max_model_len,
            gpu_memory_utilization=settings.vllm_gpu_memory_utilization,
        )
        return VllmServer(
            spec, work_dir / "logs", settings.vllm_start_timeout_s, executable=executable
        )
    return unservable(kind)
