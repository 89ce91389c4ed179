"""The model-server interface the deployer drives, over two backends (vllm.py, llamacpp.py).

Both serve the OpenAI chat API the gateway calls, so a route only needs a server's base URL
and the model name it answers to. What differs is how a server is started (a local process
here, a Kubernetes Deployment for vLLM in production) and what it can do at run time
(vLLM loads LoRA adapters into a running server; llama.cpp serves one GGUF file).
"""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import httpx2


class ServerError(Exception):
    """A model server that did not start, answer, or accept an adapter."""


@dataclass(frozen=True)
class Served:
    """Where a started server answers: what a route's Backend is built from."""

    base_url: str  # ending in /v1
    model: str


class ModelServer(Protocol):
    engine: str

    async def start(self) -> Served: ...
    async def stop(self) -> None: ...
    async def healthy(self) -> bool: ...


@dataclass
class LocalProcess:
    """A server as a child process on a loopback port: started, waited for, stopped.

    The command is built by the backend; it is ready when `health_path` answers 200 before
    `start_timeout_s`, the process still alive.
    """

    command: list[str]
    port: int
    log_path: Path
    env: dict[str, str] = field(default_factory=dict)
    start_timeout_s: float = 120.0
    host: str = "127.0.0.1"
    health_path: str = "/health"  # llama-cpp-python's server has none: /v1/models
    _proc: subprocess.Popen[bytes] | None = None

    @property
    def root(self) -> str:
        return f"http://{self.host}:{self.port}"

    def _spawn(self) -> subprocess.Popen[bytes]:
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        with self.log_path.open("ab") as log:
            return subprocess.Popen(
                self.command,
                stdout=log,
                stderr=subprocess.STDOUT,
                env={**os.environ, **self.env},
                start_new_session=True,  # its own group: stop() reaches its children too
            )

    async def start(self) -> None:
        self._proc = self._spawn()  # Popen returns at once; the wait below is async
        deadline = time.monotonic() + self.start_timeout_s
        while not await self.healthy():
            if self._proc.poll() is not None:
                raise ServerError(
                    f"{self.command[0]} exited with {self._proc.returncode}; log: {self.log_path}"
                )
            if time.monotonic() > deadline:
                await self.stop()
                raise ServerError(f"not healthy after {self.start_timeout_s} s; {self.log_path}")
            await asyncio.sleep(0.25)

    async def healthy(self) -> bool:
        try:
            async with httpx2.AsyncClient(timeout=2.0) as client:
                return (await client.get(f"{self.root}{self.health_path}")).status_code == 200
        except httpx2.HTTPError:
            return False

    async def stop(self, grace_s: float = 20.0) -> None:
        proc, self._proc = self._proc, None
        if proc is None or proc.poll() is not None:
            return
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            await asyncio.to_thread(proc.wait, grace_s)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            await asyncio.to_thread(proc.wait)

    @property
    def running(self) -> bool:
        return self._proc is not None and self._proc.poll() is None


class ProcessServer:
    """A model server that is one LocalProcess: the lifecycle every local backend shares."""

    engine: str  # what a route to it says: "llama.cpp" or "vllm" (how to ask it)
    process: LocalProcess
    spec: Any  # the backend's spec; every one names the model it serves (served_name)

    @property
    def route_model(self) -> str:
        """The model name requests for the candidate carry."""
        return self.spec.served_name

    async def start(self) -> Served:
        await self.process.start()
        return Served(f"{self.process.root}/v1", self.route_model)

    async def stop(self) -> None:
        await self.process.stop()

    async def healthy(self) -> bool:
        return await self.process.healthy()
