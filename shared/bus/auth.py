"""Who may do what on the bus, derived from the event catalog, as nats-server authorization.

One NATS user per bus identity (`shared.events.catalog.IDENTITIES`): it may publish exactly
the events the catalog lists it as a producer of, and subscribe to exactly those it consumes.
Its JetStream grants are the ones its own durable consumers need, by name, so a service can
neither read another's consumer nor create one on a subject it does not consume: nats-py
creates a durable with `$JS.API.CONSUMER.CREATE.<stream>.<durable>.<filter subject>`, and the
server checks that the filter in the request matches the one in the subject.

Replies (publish acks, pulled messages, API answers) go to an inbox under a prefix of the
identity's own (`_INBOX_<identity>`), so no identity can read another's deliveries by
subscribing to `_INBOX.>`. Only "ops" keeps the default `_INBOX`: some CLI commands open plain
connections that cannot set a prefix, and no other identity uses it.

    python -m shared.bus.auth                 the `authorization {}` block for nats-server, each
                                              password read from $NATS_PASSWORD_<IDENTITY>
    python -m shared.bus.auth --format json   the same permissions, for review
    python -m shared.bus.auth --bcrypt        bcrypt of a password read from stdin

The embedded runtime (`distillery up`) generates a password per identity once, keeps it in
HOME/credentials/<identity>.json (0600) and gives nats-server only its bcrypt hash.
"""

from __future__ import annotations

import argparse
import json
import os
import secrets
import sys
from collections.abc import Iterable, Mapping
from dataclasses import asdict, dataclass
from pathlib import Path

from pydantic import SecretStr

from shared.events import CATALOG, STREAM_NAME
from shared.events.catalog import IDENTITIES, SERVICES, DeadLettered
from shared.events.values import KV_BUCKETS

from .audit import AUDITOR
from .audit import DURABLE as AUDIT_DURABLE
from .broker import BusCredentials, inbox_prefix
from .consumer import durable_name

# nats-server's own `passwd` tool defaults to 11; the server checks it once per connection.
BCRYPT_COST = 11
CREDENTIALS_DIR = "credentials"
STREAM_API = "$JS.API.STREAM"
CONSUMER_API = "$JS.API.CONSUMER"
# Only for services the catalog does not name: they may consume anything, as anyone.
PULL_INBOX = "_INBOX.>"


@dataclass(frozen=True)
class Permissions:
    publish: tuple[str, ...]
    subscribe: tuple[str, ...]


def produced(identity: str) -> list[str]:
    return sorted(cls.subject for cls in CATALOG.values() if identity in cls.producers)


def consumed(identity: str) -> list[str]:
    return sorted(cls.subject for cls in CATALOG.values() if identity in cls.consumers)


def consumer_grants(identity: str, subject: str) -> list[str]:
    """What one durable pull consumer needs: look it up, create it on its own filter subject,
    pull from it, and ack / nak / +WPI what it was given (acks are publishes to the
    message's reply subject, `$JS.ACK.<stream>.<durable>.…`)."""
    durable = durable_name(identity, CATALOG[subject])
    where = f"{STREAM_NAME}.{durable}"
    return [
        f"{CONSUMER_API}.INFO.{where}",
        f"{CONSUMER_API}.CREATE.{where}.{subject}",
        f"{CONSUMER_API}.MSG.NEXT.{where}",
        f"$JS.ACK.{where}.>",
    ]


def bucket_grants(bucket: str) -> list[str]:
    """What a key-value bucket's user needs, on that bucket's stream only: make or look it up,
    put (a publish to `$KV.<bucket>.<key>`), get (direct or message get), and watch (an
    ordered push consumer it creates, answers flow control for and deletes)."""
    stream = f"KV_{bucket}"
    return [
        f"$KV.{bucket}.>",
        f"{STREAM_API}.INFO.{stream}",
        f"{STREAM_API}.CREATE.{stream}",
        f"{STREAM_API}.MSG.GET.{stream}",
        f"$JS.API.DIRECT.GET.{stream}",
        f"$JS.API.DIRECT.GET.{stream}.>",
        f"{CONSUMER_API}.CREATE.{stream}",
        f"{CONSUMER_API}.CREATE.{stream}.>",
        f"{CONSUMER_API}.INFO.{stream}.>",
        f"{CONSUMER_API}.DELETE.{stream}.>",
        f"$JS.FC.{stream}.>",
    ]


def permissions(identity: str) -> Permissions:
    """The exact grants of a catalog identity; KeyError for a name the catalog does not know."""
    if identity not in IDENTITIES:
        raise KeyError(f"{identity!r} is not a bus identity; known: {sorted(IDENTITIES)}")
    publish = produced(identity)
    subscribe = consumed(identity)
    if identity == "ops":
        # The operator creates the stream and brings it to the declared config; nobody may
        # delete or purge it over the bus.
        publish += [f"{STREAM_API}.{verb}.{STREAM_NAME}" for verb in ("INFO", "CREATE", "UPDATE")]
    elif identity in SERVICES:
        # A service may create the stream on an empty bus (the first one up does), never
        # change an existing one: `ensure_stream` only warns when it differs.
        publish += [f"{STREAM_API}.{verb}.{STREAM_NAME}" for verb in ("INFO", "CREATE")]
        for subject in subscribe:
            publish += consumer_grants(identity, subject)
    for bucket, users in sorted(KV_BUCKETS.items()):
        if identity in users:
            publish += bucket_grants(bucket)
    subscribe.append(f"{inbox_prefix(identity)}.>")
    return Permissions(tuple(publish), tuple(subscribe))


def unlisted_permissions(name: str) -> Permissions:
    """For a service the catalog does not name (DISTILLERY_EXTRA_SERVICES, a development
    hook): every event and any consumer on the stream, but still no stream administration
    and a password of its own."""
    return Permissions(
        publish=(
            "distillery.>",
            f"{STREAM_API}.INFO.{STREAM_NAME}",
            f"{STREAM_API}.CREATE.{STREAM_NAME}",
            f"{CONSUMER_API}.INFO.{STREAM_NAME}.*",
            f"{CONSUMER_API}.CREATE.{STREAM_NAME}.>",
            f"{CONSUMER_API}.MSG.NEXT.{STREAM_NAME}.*",
            f"$JS.ACK.{STREAM_NAME}.>",
        ),
        subscribe=("distillery.>", PULL_INBOX, f"{inbox_prefix(name)}.>"),
    )


def auditor_permissions() -> Permissions:
    """The stray auditor (shared/bus/audit.py), a kernel identity the catalog does not list:
    its one durable consumer on the whole stream, and dead letters. It may publish no event
    of the loop, so reading everything gives it no way to act on what it reads."""
    where = f"{STREAM_NAME}.{AUDIT_DURABLE}"
    return Permissions(
        publish=(
            DeadLettered.subject,
            f"{STREAM_API}.INFO.{STREAM_NAME}",
            f"{CONSUMER_API}.INFO.{where}",
            # The filter is the stream's wildcard itself; nats-py puts it in the subject.
            f"{CONSUMER_API}.CREATE.{where}.>",
            f"{CONSUMER_API}.MSG.NEXT.{where}",
            f"$JS.ACK.{where}.>",
        ),
        subscribe=(f"{inbox_prefix(AUDITOR)}.>",),
    )


def permissions_for(name: str) -> Permissions:
    if name == AUDITOR:
        return auditor_permissions()
    return permissions(name) if name in IDENTITIES else unlisted_permissions(name)


def password_variable(identity: str) -> str:
    return "NATS_PASSWORD_" + identity.upper().replace("-", "_")


def _strings(items: Iterable[str], indent: str) -> str:
    return "".join(f"\n{indent}  {json.dumps(item)}" for item in items) + f"\n{indent}"


def render_conf(passwords: Mapping[str, str]) -> str:
    """The `authorization {}` block for nats-server.

    `passwords` maps each user to its password field exactly as written: a quoted bcrypt hash
    or a `$VARIABLE` that nats-server reads from its environment. Users are sorted, so the
    output is stable and a committed copy can be checked against the catalog.
    """
    users = []
    for user in sorted(passwords):
        grants = permissions_for(user)
        users.append(
            "    {\n"
            f"      user: {json.dumps(user)}\n"
            f"      password: {passwords[user]}\n"
            "      permissions: {\n"
            f"        publish: {{ allow: [{_strings(grants.publish, '        ')}] }}\n"
            f"        subscribe: {{ allow: [{_strings(grants.subscribe, '        ')}] }}\n"
            "      }\n"
            "    }\n"
        )
    return (
        "# Generated by `python -m shared.bus.auth` from shared/events/catalog.py; do not edit.\n"
        "# A client with no user or a wrong password is refused; a publish or subscribe outside\n"
        "# its user's grants is refused by the server and never reaches the stream.\n"
        "authorization {\n  users: [\n" + "".join(users) + "  ]\n}\n"
    )


def deploy_users() -> frozenset[str]:
    """The NATS users deploy/ and compose.yaml run: every catalog identity and the auditor."""
    return frozenset(IDENTITIES | {AUDITOR})


def deploy_conf() -> str:
    """Every deploy user, each password from the server's environment (deploy/, compose)."""
    return render_conf({i: "$" + password_variable(i) for i in deploy_users()})


def bcrypt_hash(password: str, cost: int = BCRYPT_COST) -> str:
    # pycryptodome is already installed (minio requires it); its bcrypt writes the `$2a$` form
    # that nats-server recognises as a hash rather than a plaintext password.
    from Crypto.Protocol.KDF import bcrypt

    return bcrypt(password.encode(), cost).decode()


@dataclass(frozen=True)
class StoredCredentials:
    user: str
    password: SecretStr
    bcrypt: str

    @property
    def bus(self) -> BusCredentials:
        return BusCredentials(self.user, self.password)


def credentials_path(home: Path, identity: str) -> Path:
    return home / CREDENTIALS_DIR / f"{identity}.json"


def ensure_credentials(home: Path, identity: str) -> StoredCredentials:
    """HOME/credentials/<identity>.json, made once (0600, in a 0700 folder) and then reused,
    so a restarted `distillery up` and the CLI agree on the passwords."""
    path = credentials_path(home, identity)
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    path.parent.chmod(0o700)
    if not path.exists():
        password = secrets.token_urlsafe(32)
        data = {"user": identity, "password": password, "bcrypt": bcrypt_hash(password)}
        try:
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        except FileExistsError:
            pass  # another process made it first; read theirs
        else:
            with os.fdopen(fd, "w") as f:
                json.dump(data, f)
    path.chmod(0o600)
    return read_credentials(path)


def read_credentials(path: Path) -> StoredCredentials:
    data = json.loads(path.read_text())
    if not (data.get("password") and str(data.get("bcrypt", "")).startswith("$2")):
        raise ValueError(f"{path} is not a credentials file; remove it to make a new one")
    return StoredCredentials(data["user"], SecretStr(data["password"]), data["bcrypt"])


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m shared.bus.auth", description=__doc__)
    parser.add_argument("--format", choices=("conf", "json"), default="conf")
    parser.add_argument("--bcrypt", action="store_true", help="hash a password read from stdin")
    args = parser.parse_args(argv)
    if args.bcrypt:
        password = sys.stdin.readline().rstrip("\n")
        if not password:
            parser.error("no password on stdin")
        print(bcrypt_hash(password))
    elif args.format == "json":
        grants = {i: asdict(permissions(i)) for i in sorted(IDENTITIES)}
        print(json.dumps(grants, indent=2))
    else:
        sys.stdout.write(deploy_conf())


if __name__ == "__main__":
    main()
