"""The artifact store port, its errors, and the streaming hash helpers both adapters share."""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import os
import tempfile
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import BinaryIO, Protocol

from shared.events.base import ArtifactRef

CHUNK_SIZE = 1024 * 1024
KEY_PREFIX = "sha256"
OCTET_STREAM = "application/octet-stream"


class ArtifactError(Exception):
    """Base of every artifact-store failure this package raises itself."""


class IntegrityError(ArtifactError):
    """The stored bytes are not the bytes the ref promises: never use them."""


class ArtifactNotFound(ArtifactError):
    """The ref is well formed and ours, but no object is stored under it."""


class ArtifactStore(Protocol):
    def put_file(self, path: Path, *, media_type: str = OCTET_STREAM) -> ArtifactRef: ...

    def put_bytes(self, data: bytes, *, media_type: str = OCTET_STREAM) -> ArtifactRef: ...

    def get_file(self, ref: ArtifactRef, dest: Path) -> Path: ...

    def get_bytes(self, ref: ArtifactRef) -> bytes: ...

    def exists(self, ref: ArtifactRef) -> bool: ...


class AsyncArtifactStore:
    """Runs a sync store in worker threads, so hashing gigabytes never blocks the event loop."""

    def __init__(self, store: ArtifactStore) -> None:
        self.sync = store

    def __repr__(self) -> str:
        return f"AsyncArtifactStore({self.sync!r})"

    async def put_file(self, path: Path, *, media_type: str = OCTET_STREAM) -> ArtifactRef:
        return await asyncio.to_thread(self.sync.put_file, path, media_type=media_type)

    async def put_bytes(self, data: bytes, *, media_type: str = OCTET_STREAM) -> ArtifactRef:
        return await asyncio.to_thread(self.sync.put_bytes, data, media_type=media_type)

    async def get_file(self, ref: ArtifactRef, dest: Path) -> Path:
        return await asyncio.to_thread(self.sync.get_file, ref, dest)

    async def get_bytes(self, ref: ArtifactRef) -> bytes:
        return await asyncio.to_thread(self.sync.get_bytes, ref)

    async def exists(self, ref: ArtifactRef) -> bool:
        return await asyncio.to_thread(self.sync.exists, ref)


def object_key(sha256: str) -> str:
    # Fan out on the first byte so no single folder (or S3 prefix) holds every object.
    return f"{KEY_PREFIX}/{sha256[:2]}/{sha256}"


def check_ref_uri(ref: ArtifactRef, expected_uri: str, store_prefix: str) -> None:
    """Refuse refs minted by another store rather than read a same-named object elsewhere."""
    if ref.uri == expected_uri:
        return
    if not ref.uri.startswith(store_prefix):
        raise ArtifactError(
            f"artifact {ref.uri} belongs to another store; this store serves {store_prefix}*"
        )
    raise ArtifactError(f"artifact uri {ref.uri} does not match its sha256 {ref.sha256}")


def iter_chunks(stream: BinaryIO) -> Iterator[bytes]:
    while chunk := stream.read(CHUNK_SIZE):
        yield chunk


def hash_file(path: Path) -> tuple[str, int]:
    """sha256 and size in one streamed pass."""
    digest, size = hashlib.sha256(), 0
    with path.open("rb") as source:
        for chunk in iter_chunks(source):
            digest.update(chunk)
            size += len(chunk)
    return digest.hexdigest(), size


class HashingReader:
    """Hashes what a consumer (e.g. an upload) actually read, to prove it is what we hashed."""

    def __init__(self, stream: BinaryIO) -> None:
        self._stream = stream
        self._digest = hashlib.sha256()
        self.size = 0

    def read(self, size: int = -1) -> bytes:
        chunk = self._stream.read(size)
        self._digest.update(chunk)
        self.size += len(chunk)
        return chunk

    def hexdigest(self) -> str:
        return self._digest.hexdigest()


def _verified(chunks: Iterable[bytes], ref: ArtifactRef) -> Iterator[bytes]:
    """Pass chunks through, raising IntegrityError once they diverge from the ref."""
    digest, size = hashlib.sha256(), 0
    for chunk in chunks:
        size += len(chunk)
        if size > ref.size_bytes:
            # Stop early: a corrupt object could be arbitrarily large and fill the disk.
            raise IntegrityError(
                f"artifact {ref.uri}: more than the expected {ref.size_bytes} bytes stored"
            )
        digest.update(chunk)
        yield chunk
    actual = digest.hexdigest()
    if size != ref.size_bytes or actual != ref.sha256:
        raise IntegrityError(
            f"artifact {ref.uri}: expected sha256 {ref.sha256} ({ref.size_bytes} bytes), "
            f"got sha256 {actual} ({size} bytes)"
        )


def read_verified(chunks: Iterable[bytes], ref: ArtifactRef) -> bytes:
    return b"".join(_verified(chunks, ref))


def write_verified(chunks: Iterable[bytes], ref: ArtifactRef, dest: Path) -> Path:
    """Write to a sibling temp file and rename only after the digest matches.

    A reader of `dest` therefore sees either nothing or the whole verified artifact.
    """
    dest.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(dir=dest.parent, prefix=f".{dest.name}.", suffix=".part")
    tmp = Path(tmp_name)
    try:
        with os.fdopen(fd, "wb") as out:
            for chunk in _verified(chunks, ref):
                out.write(chunk)
            out.flush()
            os.fsync(out.fileno())
        os.replace(tmp, dest)
    except BaseException:
        # BaseException too: a Ctrl-C mid-download must not leave a half file behind.
        with contextlib.suppress(FileNotFoundError):
            tmp.unlink()
        raise
    return dest
