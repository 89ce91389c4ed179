"""Artifact store on an S3-protocol server (MinIO in production), through the `minio` SDK.

Only "the object is not there" becomes ArtifactNotFound. Connection failures and other
S3Errors propagate unchanged so a consumer can classify them as transient and retry.
"""

from __future__ import annotations

import hashlib
import io
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from minio import Minio
from minio.error import S3Error

from shared.artifacts.base import (
    CHUNK_SIZE,
    OCTET_STREAM,
    ArtifactError,
    ArtifactNotFound,
    HashingReader,
    IntegrityError,
    check_ref_uri,
    hash_file,
    object_key,
    read_verified,
    write_verified,
)
from shared.events.base import ArtifactRef

# The SDK switches to multipart above one part and holds (uploads + 1) parts in memory.
PART_SIZE = 16 * 1024 * 1024
_NOT_FOUND = frozenset({"NoSuchKey", "NotFound"})


class S3ArtifactStore:
    """Content-addressed objects at `s3://<bucket>/sha256/<ab>/<abcd…>`.

    Equal bytes share one object whatever their media type; the ref carries the media type
    its producer meant, the object's Content-Type is just the first writer's.
    Credentials go straight into the SDK client and are never kept on this object, so
    they cannot leak through repr, logs or exception messages.
    """

    def __init__(
        self,
        endpoint: str,
        access_key: str,
        secret_key: str,
        bucket: str,
        secure: bool = False,
        region: str | None = None,
    ) -> None:
        self.endpoint = endpoint
        self.bucket = bucket
        self.secure = secure
        self._prefix = f"s3://{bucket}/"
        self._client = Minio(
            endpoint, access_key=access_key, secret_key=secret_key, secure=secure, region=region
        )
        self._ensure_bucket(region)

    def __repr__(self) -> str:
        return (
            f"S3ArtifactStore(endpoint={self.endpoint!r}, bucket={self.bucket!r}, "
            f"secure={self.secure})"
        )

    def put_file(self, path: Path, *, media_type: str = OCTET_STREAM) -> ArtifactRef:
        # The key is the digest, so hash first (one streamed pass), then upload.
        path = Path(path)
        sha256, size = hash_file(path)
        ref = self._ref(sha256, size, media_type)
        if self._stored_size(ref) == size:
            return ref
        with path.open("rb") as source:
            sent = HashingReader(source)
            self._upload(ref, sent)
        if sent.hexdigest() != sha256:
            # The file changed between hashing and upload: the key now names other bytes.
            self._client.remove_object(self.bucket, object_key(sha256))
            raise ArtifactError(f"{path} changed while being stored as {ref.uri}; retry the put")
        return ref

    def put_bytes(self, data: bytes, *, media_type: str = OCTET_STREAM) -> ArtifactRef:
        ref = self._ref(hashlib.sha256(data).hexdigest(), len(data), media_type)
        if self._stored_size(ref) != ref.size_bytes:
            self._upload(ref, io.BytesIO(data))
        return ref

    def get_file(self, ref: ArtifactRef, dest: Path) -> Path:
        with self._open(ref) as chunks:
            return write_verified(chunks, ref, Path(dest))

    def get_bytes(self, ref: ArtifactRef) -> bytes:
        with self._open(ref) as chunks:
            return read_verified(chunks, ref)

    def exists(self, ref: ArtifactRef) -> bool:
        return self._stored_size(ref) is not None

    def _upload(self, ref: ArtifactRef, data: io.BytesIO | HashingReader) -> None:
        # Straight to the final key: an S3 PUT, and a multipart upload's completion, become
        # visible all at once, so no reader ever sees a partial object. An interrupted
        # multipart upload is aborted by the SDK; one cut off by a crash stays invisible
        # until the bucket's AbortIncompleteMultipartUpload lifecycle rule reaps it.
        self._client.put_object(
            self.bucket,
            object_key(ref.sha256),
            data,  # type: ignore[arg-type]  # the SDK only needs read()
            ref.size_bytes,
            content_type=ref.media_type,
            part_size=PART_SIZE,
        )
        stored = self._stored_size(ref)
        if stored != ref.size_bytes:
            raise IntegrityError(
                f"artifact {ref.uri}: uploaded {ref.size_bytes} bytes but the store holds "
                f"{stored}; expected sha256 {ref.sha256}"
            )

    @contextmanager
    def _open(self, ref: ArtifactRef) -> Iterator[Iterator[bytes]]:
        key = self._key(ref)
        try:
            response = self._client.get_object(self.bucket, key)
        except S3Error as exc:
            if exc.code in _NOT_FOUND:
                raise ArtifactNotFound(f"artifact {ref.uri} is not in the store") from None
            raise
        try:
            yield response.stream(CHUNK_SIZE)
        finally:
            response.close()
            response.release_conn()

    def _stored_size(self, ref: ArtifactRef) -> int | None:
        try:
            return self._client.stat_object(self.bucket, self._key(ref)).size
        except S3Error as exc:
            if exc.code in _NOT_FOUND:
                return None
            raise

    def _ensure_bucket(self, region: str | None) -> None:
        if self._client.bucket_exists(self.bucket):
            return
        try:
            self._client.make_bucket(self.bucket, location=region)
        except S3Error as exc:
            # Another replica starting at the same moment may have just created it.
            if exc.code != "BucketAlreadyOwnedByYou":
                raise

    def _key(self, ref: ArtifactRef) -> str:
        check_ref_uri(ref, self._prefix + object_key(ref.sha256), self._prefix)
        return object_key(ref.sha256)

    def _ref(self, sha256: str, size: int, media_type: str) -> ArtifactRef:
        return ArtifactRef(
            uri=self._prefix + object_key(sha256),
            sha256=sha256,
            size_bytes=size,
            media_type=media_type,
        )
