"""Artifact store on a local folder: the embedded default, one machine, no object server."""

from __future__ import annotations

import contextlib
import hashlib
import io
import os
import tempfile
from pathlib import Path
from typing import BinaryIO

from shared.artifacts.base import (
    OCTET_STREAM,
    ArtifactNotFound,
    check_ref_uri,
    iter_chunks,
    object_key,
    read_verified,
    write_verified,
)
from shared.events.base import ArtifactRef

# Stored objects are immutable by construction; read-only makes an accidental in-place
# edit fail loudly instead of silently breaking every ref that points at the object.
_OBJECT_MODE = 0o444


class LocalArtifactStore:
    """Content-addressed objects under `root/sha256/<ab>/<abcd…>`.

    Writes stage in `root/.staging` (same filesystem as the objects, so `os.replace` is an
    atomic rename) and appear under their final key only complete and fsynced. A process
    killed mid-put leaves at most an orphan `.staging/*.part`, never a visible object; such
    orphans are safe to delete once older than the longest put.
    """

    def __init__(self, root: Path) -> None:
        self.root = Path(root).resolve()
        self._staging = self.root / ".staging"
        self._staging.mkdir(parents=True, exist_ok=True)
        self._prefix = self.root.as_uri().rstrip("/") + "/"

    def __repr__(self) -> str:
        return f"LocalArtifactStore(root={str(self.root)!r})"

    def put_file(self, path: Path, *, media_type: str = OCTET_STREAM) -> ArtifactRef:
        with Path(path).open("rb") as source:
            return self._put_stream(source, media_type)

    def put_bytes(self, data: bytes, *, media_type: str = OCTET_STREAM) -> ArtifactRef:
        ref = self._ref(hashlib.sha256(data).hexdigest(), len(data), media_type)
        if self._is_stored(ref):
            return ref
        return self._put_stream(io.BytesIO(data), media_type)

    def get_file(self, ref: ArtifactRef, dest: Path) -> Path:
        with self._open(ref) as source:
            return write_verified(iter_chunks(source), ref, Path(dest))

    def get_bytes(self, ref: ArtifactRef) -> bytes:
        with self._open(ref) as source:
            return read_verified(iter_chunks(source), ref)

    def exists(self, ref: ArtifactRef) -> bool:
        return self._path(ref).is_file()

    def _put_stream(self, source: BinaryIO, media_type: str) -> ArtifactRef:
        # One pass: copy and hash together, since the key is only known at the end.
        fd, tmp_name = tempfile.mkstemp(dir=self._staging, suffix=".part")
        tmp = Path(tmp_name)
        try:
            digest, size = hashlib.sha256(), 0
            with os.fdopen(fd, "wb") as out:
                for chunk in iter_chunks(source):
                    digest.update(chunk)
                    size += len(chunk)
                    out.write(chunk)
                ref = self._ref(digest.hexdigest(), size, media_type)
                if self._is_stored(ref):
                    return ref
                out.flush()
                os.fsync(out.fileno())
            os.chmod(tmp, _OBJECT_MODE)
            final = self._object_path(ref.sha256)
            final.parent.mkdir(parents=True, exist_ok=True)
            # Concurrent puts of the same bytes race harmlessly: both renames install
            # identical content, and each is atomic.
            os.replace(tmp, final)
            _fsync_dir(final.parent)
            return ref
        finally:
            # BaseException paths too (finally): an interrupted put leaves no staging file.
            with contextlib.suppress(FileNotFoundError):
                tmp.unlink()

    def _is_stored(self, ref: ArtifactRef) -> bool:
        # A same-sized object is taken as present; reads still verify the digest. A wrong
        # size means a damaged object, which the new put then replaces.
        try:
            return self._object_path(ref.sha256).stat().st_size == ref.size_bytes
        except FileNotFoundError:
            return False

    def _open(self, ref: ArtifactRef) -> BinaryIO:
        try:
            return self._path(ref).open("rb")
        except FileNotFoundError:
            raise ArtifactNotFound(f"artifact {ref.uri} is not in the store") from None

    def _path(self, ref: ArtifactRef) -> Path:
        check_ref_uri(ref, self._uri(ref.sha256), self._prefix)
        return self._object_path(ref.sha256)

    def _object_path(self, sha256: str) -> Path:
        return self.root / object_key(sha256)

    def _uri(self, sha256: str) -> str:
        return self._prefix + object_key(sha256)

    def _ref(self, sha256: str, size: int, media_type: str) -> ArtifactRef:
        return ArtifactRef(
            uri=self._uri(sha256), sha256=sha256, size_bytes=size, media_type=media_type
        )


def _fsync_dir(path: Path) -> None:
    # Without this a power cut after the rename can lose the directory entry.
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
