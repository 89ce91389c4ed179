"""The embedded runtime behind `up` and `demo`: nats-server, database, artifacts, services.

Start order is bus → schema → artifact folder → services, so a service never starts against a
missing stream or an unmigrated table; stop order is the reverse.

The bus runs with authorization on (shared/bus/auth.py): "ops" (this process and the CLI),
"ingest" and each started service get a password of their own, made once under
HOME/credentials; nats-server sees only bcrypt hashes, and each service only its own password.
"""

from __future__ import annotations

import asyncio
import json
import os
import socket
import threading
from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from pathlib import Path

from shared.bus import ensure_stream
from shared.bus.audit import AUDITOR
from shared.bus.auth import StoredCredentials, ensure_credentials, render_conf
from shared.db.migrate import upgrade
from shared.events import StreamPolicy
from shared.events.catalog import IDENTITIES
from shared.runtime.natsd import NatsServer, free_port
from shared.runtime.registry import EXTRA_ENV, GROUP, SELECT_ENV, ServiceSpec
from shared.runtime.supervisor import Child, Supervisor
from shared.settings import PlatformSettings

from .common import (
    Target,
    mask_nats_url,
    mask_url,
    nats_url_as,
    runtime_path,
    scrub,
    write_runtime,
)

DEFAULT_NATS_PORT = 4222
# Always made: the operator's (the CLI's) and the one outside apps feed traffic in with.
BASE_IDENTITIES = ("ops", "ingest")
# Runs whenever services do: a message on a subject no catalog event has is recorded, not lost.
AUDITOR_SPEC = ServiceSpec(AUDITOR, "shared.runtime.auditor:create_app", "kernel")
CREDENTIAL_ENV = ("DISTILLERY_NATS_USER", "DISTILLERY_NATS_PASSWORD")
# Processes that are part of another service and speak on the bus as it: the gateway is the
# deployer's data plane (the catalog names "deployer" as the producer of traffic.logged).
BUS_IDENTITY_OF = {"gateway": "deployer"}
Announce = Callable[[str], None]


# Where the gateway listens: DeployerSettings' env variables and defaults (shared does not
# import a service; tests/unit/test_embedded_gateway.py holds the two equal).
GATEWAY_HOST = ("DEPLOYER_GATEWAY_HOST", "127.0.0.1")
GATEWAY_PORT = ("DEPLOYER_GATEWAY_PORT", "8080")


def gateway_url(env: Mapping[str, str] | None = None) -> str:
    env = os.environ if env is None else env
    host, port = env.get(*GATEWAY_HOST), env.get(*GATEWAY_PORT)
    return f"http://{host}:{port}/v1"


def bus_identity(service: str) -> str:
    return BUS_IDENTITY_OF.get(service, service)


class StartupError(Exception):
    """A start-up step failed; the message says which and where to look."""


def port_answers(port: int, host: str = "127.0.0.1") -> bool:
    with socket.socket() as s:
        s.settimeout(0.5)
        return s.connect_ex((host, port)) == 0


def choose_port(requested: int | None, announce: Announce) -> int:
    if requested:
        if port_answers(requested):
            raise StartupError(f"port {requested} is already in use; pick another --nats-port")
        return requested
    if not port_answers(DEFAULT_NATS_PORT):
        return DEFAULT_NATS_PORT
    port = free_port()
    announce(f"a server already answers on port {DEFAULT_NATS_PORT}; using port {port} instead")
    return port


class EmbeddedRuntime:
    def __init__(
        self,
        home: Path,
        specs: list[ServiceSpec],
        *,
        nats_port: int | None = None,
        announce: Announce = print,
        on_change: Callable[[Child, str], None] | None = None,
    ) -> None:
        self.home = home.resolve()
        selected = {s.name for s in specs}
        self.specs = [*specs, AUDITOR_SPEC] if specs and AUDITOR not in selected else specs
        self.requested_port = nats_port
        self.announce = announce
        self.on_change = on_change
        self.settings = PlatformSettings(home=self.home)
        self.database_url = self.settings.resolved_database_url
        self.artifact_root = self.settings.resolved_artifact_root
        self.log_dir = self.home / "logs"
        self.nats: NatsServer | None = None
        self.credentials: dict[str, StoredCredentials] = {}
        self.supervisor: Supervisor | None = None
        self.started_at = datetime.now(UTC)
        self._lock = threading.Lock()
        self._stopped = False

    @property
    def target(self) -> Target:
        assert self.nats is not None
        url = nats_url_as(self.nats.url, self.credentials["ops"].bus)
        return Target(self.home, url, self.database_url, None)

    def start(self) -> None:
        self.home.mkdir(parents=True, exist_ok=True)
        self.log_dir.mkdir(exist_ok=True)
        try:
            port = choose_port(self.requested_port, self.announce)
            authorization = self.make_credentials()
            self.nats = NatsServer(self.home / "nats", port=port, authorization=authorization)
            try:
                self.nats.start()
            except (OSError, RuntimeError, TimeoutError) as exc:
                raise StartupError(f"nats-server did not start: {exc}") from exc
            policy = StreamPolicy(replicas=self.settings.stream_replicas)
            ops = self.credentials["ops"].bus
            asyncio.run(ensure_stream(self.nats.url, policy, credentials=ops))
            url = mask_nats_url(self.nats.url)
            self.announce(f"nats-server  {url}  (store {self.nats.data_dir})")
            users = ", ".join(sorted(self.credentials))
            self.announce(f"bus users    {users}  (passwords in {self.home / 'credentials'})")
            try:
                upgrade(self.database_url)
            except Exception as exc:  # alembic and drivers raise many kinds; the cause is kept
                detail = scrub(str(exc), self.database_url)
                raise StartupError(f"database migration failed: {detail}") from exc
            self.announce(f"database     {mask_url(self.database_url)}  (migrated)")
            if self.settings.artifact_store == "local":
                self.artifact_root.mkdir(parents=True, exist_ok=True)
                self.announce(f"artifacts    {self.artifact_root}")
            else:
                self.announce(f"artifacts    s3 bucket {self.settings.s3_bucket}")
            self.announce(f"logs         {self.log_dir}/<service>.log")
            if self.specs:
                names = ", ".join(f"{s.name} ({s.entry})" for s in self.specs)
                self.announce(f"services     {names}")
                if any(s.name == "gateway" for s in self.specs):
                    self.announce(
                        f"gateway      {gateway_url()}  (OpenAI API; a key: `distillery gateway "
                        "keys create NAME --task TASK`)"
                    )
            else:
                self.announce(
                    f"no services registered or selected (entry points `{GROUP}`, "
                    f"{EXTRA_ENV}, {SELECT_ENV}); running nats, database and artifacts only"
                )
            self.supervisor = Supervisor(
                self.specs,
                env=self.child_env(),
                env_for=self.service_env(),
                log_dir=self.log_dir,
                cwd=Path.cwd(),
                on_change=self._changed,
            )
            self.supervisor.start()
        except BaseException:
            self.stop()
            raise
        self.write()

    def make_credentials(self) -> str:
        """Each identity's credentials (made on first use, reused after), and the server's
        authorization block built from their hashes."""
        names = [*BASE_IDENTITIES, *(bus_identity(spec.name) for spec in self.specs)]
        for name in dict.fromkeys(names):
            if name not in IDENTITIES and name != AUDITOR:
                self.announce(
                    f"warning: service {name!r} is not a bus identity in the event catalog; "
                    "it gets a user of its own that may publish and consume every event"
                )
            self.credentials[name] = ensure_credentials(self.home, name)
        return render_conf({n: json.dumps(c.bcrypt) for n, c in self.credentials.items()})

    def service_env(self) -> dict[str, dict[str, str]]:
        """Each service's own bus credentials, handed to it through its environment only."""
        env: dict[str, dict[str, str]] = {}
        for spec in self.specs:
            who = bus_identity(spec.name)
            env[spec.name] = {
                "DISTILLERY_NATS_USER": who,
                "DISTILLERY_NATS_PASSWORD": self.credentials[who].password.get_secret_value(),
            }
        return env

    def child_env(self) -> dict[str, str]:
        assert self.nats is not None
        # Whatever identity this shell carries (an operator's "ops") is never inherited.
        inherited = {k: v for k, v in os.environ.items() if k not in CREDENTIAL_ENV}
        return {
            **inherited,
            "DISTILLERY_NATS_URL": self.nats.url,
            "DISTILLERY_DATABASE_URL": self.database_url,
            "DISTILLERY_HOME": str(self.home),
            "DISTILLERY_ARTIFACT_ROOT": str(self.artifact_root),
            "PYTHONUNBUFFERED": "1",
        }

    def tick(self) -> None:
        if self.supervisor is not None:
            self.supervisor.tick()

    def supervise(self, stop: threading.Event, interval_s: float = 0.2) -> None:
        while not stop.wait(interval_s):
            self.tick()

    def stop(self) -> None:
        """Children first (SIGTERM, then SIGKILL after 10 s), then the bus; idempotent."""
        if self._stopped:
            return
        self._stopped = True
        if self.supervisor is not None:
            self.supervisor.stop()
        if self.nats is not None:
            self.nats.stop()
        runtime_path(self.home).unlink(missing_ok=True)

    def nats_state(self) -> tuple[int | None, str]:
        proc = self.nats.proc if self.nats else None
        if proc is None:
            return None, "stopped"
        return proc.pid, "running" if proc.poll() is None else f"exited ({proc.returncode})"

    def write(self) -> None:
        if self.nats is None or self.supervisor is None:
            return
        nats_pid, _ = self.nats_state()
        services = {
            c.name: {
                "entry": c.spec.entry,
                "pid": c.pid,
                "state": str(c.state),
                "restarts": c.restarts,
                "log": str(self.supervisor.log_path(c)),
            }
            for c in self.supervisor.children
        }
        with self._lock:
            write_runtime(
                self.home,
                {
                    "supervisor_pid": os.getpid(),
                    "started_at": self.started_at.isoformat(),
                    "home": str(self.home),
                    "nats_url": self.nats.url,
                    "nats_pid": nats_pid,
                    # Users only; each password stays in its own HOME/credentials file.
                    "nats_users": sorted(self.credentials),
                    "database_url": self.database_url,
                    "artifact_root": str(self.artifact_root),
                    "services": services,
                },
            )

    def _changed(self, child: Child, message: str) -> None:
        if self.on_change is not None:
            self.on_change(child, message)
        # Other commands and tests read pids and states from runtime.json: keep it current.
        self.write()
