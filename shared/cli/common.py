"""What every command shares: where the running system is, consoles, error reporting.

Where things are, in order: an explicit DISTILLERY_NATS_URL / DISTILLERY_DATABASE_URL, then
HOME/runtime.json written by a live `distillery up`, then the settings' defaults.

The CLI is "ops" on the bus: on the bus of a live `distillery up`, with the password it made
in HOME/credentials/ops.json; elsewhere (a deployment), as DISTILLERY_NATS_USER /
DISTILLERY_NATS_PASSWORD say.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated, Any
from urllib.parse import urlsplit, urlunsplit
from uuid import UUID

import typer
from rich.console import Console
from sqlalchemy.engine import make_url
from sqlalchemy.exc import DBAPIError, OperationalError, ProgrammingError

from shared.bus.auth import credentials_path, read_credentials
from shared.bus.broker import BusCredentials, bus_credentials
from shared.settings import PlatformSettings

RUNTIME_FILE = "runtime.json"
CLI_PRODUCER = "ops-cli"

HomeOption = Annotated[
    Path | None,
    typer.Option(
        "--home",
        help="Data folder of the embedded runtime (default: $DISTILLERY_HOME, else .distillery)",
        show_default=False,
    ),
]


def stdout() -> Console:
    # Built per call: rich decides colour and width when a console is made, and tests swap
    # the streams. soft_wrap keeps non-TTY output one record per line.
    return Console(soft_wrap=True, highlight=False)


def stderr() -> Console:
    return Console(stderr=True, soft_wrap=True, highlight=False)


def fail(message: str, code: int = 1) -> typer.Exit:
    stderr().print(f"[bold red]error:[/] {message}", markup=True)
    return typer.Exit(code)


def mask_url(url: str) -> str:
    try:
        return make_url(url).render_as_string(hide_password=True)
    except Exception:  # an unparsable URL is shown as nothing rather than risk a secret
        return "<unparsable database url>"


def scrub(text: str, url: str) -> str:
    """Driver messages rarely echo a password, but never let one through if they do."""
    try:
        password = make_url(url).password
    except Exception:
        return text
    return text.replace(str(password), "***") if password else text


def mask_nats_url(url: str) -> str:
    """Credentials in a NATS URL are user:password or a bare token; hide both, in every
    server of a comma-separated list."""
    return ",".join(_mask_one(server.strip()) for server in url.split(","))


def _mask_one(url: str) -> str:
    parts = urlsplit(url)
    if "@" not in parts.netloc:
        return url
    host = parts.netloc.rsplit("@", 1)[1]
    user = f"{parts.username}:***" if parts.password is not None else "***"
    return urlunsplit(parts._replace(netloc=f"{user}@{host}"))


# nats-py reads user and password from a URL without unquoting them.
_URL_SAFE = re.compile(r"[A-Za-z0-9._~-]+")


def nats_url_as(url: str, credentials: BusCredentials | None) -> str:
    """`url` with the identity in each server, for the commands that connect with a URL alone
    (the outbox relay also opens plain connections). Shown only through mask_nats_url."""
    if credentials is None:
        return url
    user, password = credentials.user, credentials.password.get_secret_value()
    if not (_URL_SAFE.fullmatch(user) and _URL_SAFE.fullmatch(password)):
        raise fail(
            "DISTILLERY_NATS_USER and DISTILLERY_NATS_PASSWORD must be URL-safe "
            "(letters, digits, '.', '_', '~', '-'); `openssl rand -hex 24` makes such a password"
        )
    servers = []
    for server in url.split(","):
        parts = urlsplit(server.strip())
        host = parts.netloc.rsplit("@", 1)[-1]
        servers.append(urlunsplit(parts._replace(netloc=f"{user}:{password}@{host}")))
    return ",".join(servers)


def ops_credentials(home: Path) -> BusCredentials | None:
    """The operator's password that `distillery up` made for this home, if it made one."""
    path = credentials_path(home, "ops")
    return read_credentials(path).bus if path.exists() else None


def parse_uuid(value: str, what: str = "cycle id") -> UUID:
    try:
        return UUID(value)
    except ValueError:
        raise typer.BadParameter(f"{value!r} is not a valid {what} (expected a UUID)") from None


def pid_alive(pid: int | None) -> bool:
    if not pid:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    # A zombie still answers kill(0); it is not running.
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return True
    return stat.rsplit(")", 1)[-1].split()[0] != "Z"


def runtime_path(home: Path) -> Path:
    return home / RUNTIME_FILE


def write_runtime(home: Path, data: dict[str, Any]) -> None:
    """Atomically, readable by the owner only: the database URL may hold a password."""
    path = runtime_path(home)
    tmp = path.with_suffix(".json.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        json.dump(data, f, indent=2)
    os.replace(tmp, path)


def read_runtime(home: Path) -> dict[str, Any] | None:
    """The live system's runtime.json, or None when absent or left behind by a dead `up`."""
    path = runtime_path(home)
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    if not pid_alive(data.get("supervisor_pid")):
        stderr().print(
            f"[yellow]note:[/] ignoring {path}: the `distillery up` that wrote it "
            f"(pid {data.get('supervisor_pid')}) is gone"
        )
        return None
    return data


@dataclass(frozen=True)
class Target:
    """Where a command finds the system."""

    home: Path
    # May carry the "ops" password (nats_url_as): out of the repr, shown via mask_nats_url.
    nats_url: str = field(repr=False)
    database_url: str
    runtime: dict[str, Any] | None

    @property
    def safe_database_url(self) -> str:
        return mask_url(self.database_url)


def resolve(home: Path | None) -> Target:
    settings = PlatformSettings(**({"home": home} if home else {}))
    home_dir = settings.home.resolve()
    runtime = read_runtime(home_dir)
    explicit = settings.model_fields_set
    nats_url = settings.nats_url
    credentials = bus_credentials(settings)
    if "nats_url" not in explicit and runtime:
        # That bus knows only the passwords its `up` made; a shell's own (for another
        # deployment) would be refused there.
        nats_url = runtime["nats_url"]
        credentials = ops_credentials(home_dir) or credentials
    database_url = settings.database_url
    if not database_url:
        database_url = (runtime or {}).get("database_url") or settings.resolved_database_url
    return Target(home_dir, nats_url_as(nats_url, credentials), database_url, runtime)


def require_database(target: Target) -> None:
    """SQLite would silently create an empty file; say what is missing instead."""
    url = make_url(target.database_url)
    on_disk = url.get_backend_name() == "sqlite" and url.database not in (None, "", ":memory:")
    if on_disk and not Path(url.database).exists():
        raise fail(
            f"no database at {url.database}; `distillery up --home {target.home}` "
            "creates and migrates it"
        )


@contextlib.contextmanager
def database_errors(target: Target) -> Iterator[None]:
    """Database failures as one clear line; the URL is masked, the driver's message kept."""
    try:
        yield
    except (OperationalError, ProgrammingError, DBAPIError, OSError) as exc:
        detail = scrub(str(getattr(exc, "orig", None) or exc), target.database_url)
        detail = detail.splitlines()[0] if detail else type(exc).__name__
        if "no such table" in detail or "does not exist" in detail:
            detail += "; the database is not migrated (`distillery up` migrates it)"
        raise fail(f"database {target.safe_database_url}: {detail}") from None


def as_utc(value: datetime | None) -> datetime | None:
    # SQLite hands back naive datetimes; the outbox only ever stores UTC.
    if value is None:
        return None
    if value.tzinfo is None:
        return value.replace(tzinfo=UTC)
    return value.astimezone(UTC)


def short(value: str | None, n: int = 8) -> str:
    return value[:n] if value else "-"
