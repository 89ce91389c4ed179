"""Artifact store: large things (datasets, adapters, models, reports) addressed by sha256.

Events carry an ArtifactRef (uri + sha256 + size), never bytes; every read verifies them.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from shared.artifacts.base import (
    ArtifactError,
    ArtifactNotFound,
    ArtifactStore,
    AsyncArtifactStore,
    IntegrityError,
)
from shared.artifacts.local import LocalArtifactStore
from shared.artifacts.s3 import S3ArtifactStore
from shared.events.base import ArtifactRef
from shared.settings import PlatformSettings

__all__ = [
    "ArtifactError",
    "ArtifactNotFound",
    "ArtifactRef",
    "ArtifactStore",
    "AsyncArtifactStore",
    "IntegrityError",
    "LocalArtifactStore",
    "S3ArtifactStore",
    "make_store",
    "store_from_settings",
]


def make_store(
    kind: Literal["local", "s3"],
    *,
    root: Path | None = None,
    endpoint: str | None = None,
    access_key: str | None = None,
    secret_key: str | None = None,
    bucket: str | None = None,
    secure: bool = False,
    region: str | None = None,
) -> ArtifactStore:
    """Build the store a service's settings ask for; called from a composition root."""
    if kind == "local":
        if root is None:
            raise ValueError("artifact store kind 'local' needs root")
        return LocalArtifactStore(root)
    if kind == "s3":
        if endpoint and access_key and secret_key and bucket:
            return S3ArtifactStore(
                endpoint, access_key, secret_key, bucket, secure=secure, region=region
            )
        given = {
            "endpoint": endpoint,
            "access_key": access_key,
            "secret_key": secret_key,
            "bucket": bucket,
        }
        # Names only, never values: two of these are secrets.
        missing = ", ".join(name for name, value in given.items() if not value)
        raise ValueError(f"artifact store kind 's3' needs {missing}")
    raise ValueError(f"unknown artifact store kind {kind!r}; expected 'local' or 's3'")


def store_from_settings(settings: PlatformSettings) -> ArtifactStore:
    """The store a process's PlatformSettings name; secrets are unwrapped only here."""
    return make_store(
        settings.artifact_store,
        root=settings.resolved_artifact_root,
        endpoint=settings.s3_endpoint,
        access_key=settings.s3_access_key.get_secret_value() if settings.s3_access_key else None,
        secret_key=settings.s3_secret_key.get_secret_value() if settings.s3_secret_key else None,
        bucket=settings.s3_bucket,
        secure=settings.s3_secure,
    )
