"""The llama.cpp backend (CPU, embedded): llama-cpp-python's OpenAI-compatible server on the
chosen GGUF variant, as a local process on a free loopback port.

- the chat template is the one in the GGUF's metadata (the converter copies the tokenizer's),
  which is what the quantizer evaluated the variant with; `chat_format` overrides it only when
  named;
- structured output: the gateway sends the task's schema as a GBNF `grammar` that admits
  exactly what the measured xgrammar grammar admits, and greedy without the server's default
  repeat penalty (prompts.decoding), so the server decodes as the variant was measured;
- concurrent requests are accepted and queued by the server (one model, one decode at a time;
  scale out with more processes, not threads).

llama-cpp-python is the `cpu` extra; it is run as a separate interpreter, never imported here.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass
from pathlib import Path

from shared.runtime.natsd import free_port

from .servers import LocalProcess, ProcessServer


@dataclass(frozen=True)
class LlamaCppSpec:
    gguf: Path
    served_name: str
    n_ctx: int = 2048
    n_threads: int | None = None  # None: llama.cpp's default (the physical cores)
    chat_format: str | None = None  # None: the GGUF's own chat template


def command(spec: LlamaCppSpec, host: str, port: int) -> list[str]:
    args = [sys.executable, "-m", "llama_cpp.server", "--model", str(spec.gguf)]
    args += ["--model_alias", spec.served_name, "--host", host, "--port", str(port)]
    args += ["--n_ctx", str(spec.n_ctx), "--verbose", "False"]
    if spec.n_threads is not None:
        args += ["--n_threads", str(spec.n_threads)]
    if spec.chat_format is not None:
        args += ["--chat_format", spec.chat_format]
    return args


class LlamaCppServer(ProcessServer):
    engine = "llama.cpp"

    def __init__(self, spec: LlamaCppSpec, work_dir: Path, start_timeout_s: float = 120.0):
        self.spec = spec
        port = free_port()
        self.process = LocalProcess(
            command(spec, "127.0.0.1", port),
            port,
            work_dir / f"llama-cpp-{spec.served_name}.log",
            start_timeout_s=start_timeout_s,
            health_path="/v1/models",
        )
