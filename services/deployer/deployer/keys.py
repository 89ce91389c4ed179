"""Gateway API keys: issued once, stored only as a hash, scoped to tasks (and admin).

A key is 32 random bytes (`dk-` + url-safe base64). It is stored as its SHA-256, not with a
slow password hash: a password hash (argon2, bcrypt) exists to slow guessing of low-entropy
secrets, and 256 random bits cannot be guessed; a slow hash would instead cost every request
tens of milliseconds. Lookups go by the digest, so comparing secrets never happens in Python.
"""

from __future__ import annotations

import hashlib
import secrets
from collections.abc import Iterable
from dataclasses import dataclass, field

PREFIX = "dk-"
ALL_TASKS = "*"


def new_secret() -> str:
    return PREFIX + secrets.token_urlsafe(32)


def digest(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


@dataclass(frozen=True)
class ApiKey:
    """What the gateway knows about a key: never the secret itself."""

    key_id: str  # public handle, for logs, limits and sticky routing
    key_hash: str
    tasks: frozenset[str] = field(default_factory=frozenset)  # "*": every task
    admin: bool = False
    requests_per_minute: int | None = None  # None: the gateway's default

    def allows(self, task: str) -> bool:
        return self.admin or ALL_TASKS in self.tasks or task in self.tasks


def issue(
    key_id: str,
    tasks: Iterable[str] = (),
    *,
    admin: bool = False,
    requests_per_minute: int | None = None,
) -> tuple[str, ApiKey]:
    """A new key: the secret to hand out once, and the record to store."""
    secret = new_secret()
    record = ApiKey(key_id, digest(secret), frozenset(tasks), admin, requests_per_minute)
    return secret, record


class KeyRing:
    """The live keys of one gateway, replaced whole on each refresh (a revoked key is absent)."""

    def __init__(self, keys: Iterable[ApiKey] = ()) -> None:
        self._by_hash: dict[str, ApiKey] = {}
        self.replace(keys)

    def replace(self, keys: Iterable[ApiKey]) -> None:
        self._by_hash = {k.key_hash: k for k in keys}

    def authenticate(self, authorization: str | None) -> ApiKey | None:
        """The key named by an `Authorization: Bearer <key>` header; None if absent/unknown."""
        if not authorization:
            return None
        scheme, _, secret = authorization.partition(" ")
        secret = secret.strip()
        if scheme.lower() != "bearer" or not secret.startswith(PREFIX):
            return None
        return self._by_hash.get(digest(secret))

    def __len__(self) -> int:
        return len(self._by_hash)
