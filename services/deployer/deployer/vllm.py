"""The vLLM backend (production, GPU): its command line, its Kubernetes objects, its HTTP API.

vLLM is never imported here and is not part of the default install: the deployer only builds
`vllm serve ...` (run as a local process, or rendered into deploy/ as a Deployment) and then
talks to the server over HTTP, adapters included (`/v1/load_lora_adapter`).

- quantized weights: the quantizer's variant directory carries its quantization config, which
  vLLM detects; `quantization` forces a method when it must be named (e.g. "fp8").
- LoRA: `--enable-lora` with the rank and slots needed, the candidate's adapter preloaded with
  `--lora-modules`, and VLLM_ALLOW_RUNTIME_LORA_UPDATING so new adapters are added to the
  running server without a restart (a shadow candidate next to the live one).
- structured outputs: the engine config from shared.models.decoding (xgrammar, no free
  whitespace), the same grammar the evaluator decoded under.
- speculative decoding: a draft model when the spec asks for one.
- `--generation-config vllm`: sampling defaults are vLLM's, not the checkpoint's
  generation_config.json, so a request means the same on every backend.
"""

from __future__ import annotations

import json
import shlex
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import httpx2

from shared.models.decoding import VLLM_STRUCTURED_OUTPUTS
from shared.runtime.natsd import free_port

from .servers import LocalProcess, ProcessServer, ServerError

RUNTIME_LORA_ENV = {"VLLM_ALLOW_RUNTIME_LORA_UPDATING": "True"}


@dataclass(frozen=True)
class VllmSpec:
    model: str  # a local directory (merged or quantized weights) or a mounted path
    served_name: str
    quantization: str | None = None  # None: detected from the checkpoint's config
    adapters: dict[str, str] = field(default_factory=dict)  # name -> adapter directory
    max_lora_rank: int = 16
    max_loras: int = 4
    max_model_len: int = 4096
    draft_model: str | None = None
    num_speculative_tokens: int = 4
    gpu_memory_utilization: float = 0.9
    tensor_parallel_size: int = 1
    dtype: str = "auto"
    chat_template: str | None = None  # the evaluator's, when the checkpoint's differs

    @property
    def lora(self) -> bool:
        return bool(self.adapters) or self.max_loras > 0


def command(
    spec: VllmSpec,
    host: str = "0.0.0.0",  # noqa: S104
    port: int = 8000,
    executable: Sequence[str] = ("vllm",),
) -> list[str]:
    """`vllm serve` for `spec` (0.0.0.0 by default: in a pod, the Service must reach it).
    `executable` is how vLLM's CLI is started here (DEPLOYER_VLLM_COMMAND)."""
    args = [*executable, "serve", spec.model, "--host", host, "--port", str(port)]
    args += ["--served-model-name", spec.served_name, "--dtype", spec.dtype]
    args += ["--max-model-len", str(spec.max_model_len)]
    args += ["--gpu-memory-utilization", str(spec.gpu_memory_utilization)]
    args += ["--tensor-parallel-size", str(spec.tensor_parallel_size)]
    args += ["--generation-config", "vllm"]
    args += ["--structured-outputs-config", json.dumps(VLLM_STRUCTURED_OUTPUTS)]
    if spec.quantization:
        args += ["--quantization", spec.quantization]
    if spec.lora:
        args += ["--enable-lora", "--max-lora-rank", str(spec.max_lora_rank)]
        args += ["--max-loras", str(max(1, spec.max_loras))]
        if spec.adapters:
            args += ["--lora-modules", *(f"{n}={p}" for n, p in sorted(spec.adapters.items()))]
    if spec.draft_model:
        draft = {"model": spec.draft_model, "num_speculative_tokens": spec.num_speculative_tokens}
        args += ["--speculative-config", json.dumps(draft)]
    if spec.chat_template:
        args += ["--chat-template", spec.chat_template]
    return args


def shell_line(spec: VllmSpec) -> str:
    env = " ".join(f"{k}={v}" for k, v in RUNTIME_LORA_ENV.items())
    return f"{env} {shlex.join(command(spec))}"


class VllmApi:
    """A running vLLM server's control endpoints (the chat API goes through the gateway)."""

    def __init__(self, root: str, timeout_s: float = 120.0) -> None:
        self.root = root.rstrip("/")  # http://host:port, without /v1
        self._timeout_s = timeout_s

    async def _post(self, path: str, body: dict[str, str]) -> None:
        try:
            async with httpx2.AsyncClient(timeout=self._timeout_s) as client:
                response = await client.post(f"{self.root}{path}", json=body)
        except httpx2.HTTPError as exc:
            raise ServerError(f"vLLM {path}: {exc!r}") from exc
        if response.status_code != 200:
            raise ServerError(f"vLLM {path}: {response.status_code} {response.text[:500]}")

    async def load_adapter(self, name: str, path: str) -> None:
        await self._post("/v1/load_lora_adapter", {"lora_name": name, "lora_path": path})

    async def unload_adapter(self, name: str) -> None:
        await self._post("/v1/unload_lora_adapter", {"lora_name": name})

    async def models(self) -> list[str]:
        try:
            async with httpx2.AsyncClient(timeout=self._timeout_s) as client:
                response = await client.get(f"{self.root}/v1/models")
            response.raise_for_status()
        except httpx2.HTTPError as exc:
            raise ServerError(f"vLLM /v1/models: {exc!r}") from exc
        return [m["id"] for m in response.json()["data"]]


class VllmServer(ProcessServer):
    """vLLM as a local process (a GPU machine without Kubernetes)."""

    engine = "vllm"

    @property
    def route_model(self) -> str:
        # vLLM picks a LoRA adapter by the request's model name; the base answers to its own.
        return next(iter(sorted(self.spec.adapters)), self.spec.served_name)

    def __init__(
        self,
        spec: VllmSpec,
        work_dir: Path,
        start_timeout_s: float = 900.0,
        executable: Sequence[str] = ("vllm",),
    ) -> None:
        self.spec = spec
        port = free_port()
        self.process = LocalProcess(
            command(spec, "127.0.0.1", port, executable),
            port,
            work_dir / f"vllm-{spec.served_name}.log",
            env=RUNTIME_LORA_ENV,
            start_timeout_s=start_timeout_s,
        )
        self.api = VllmApi(self.process.root)
