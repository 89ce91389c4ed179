"""Both artifact stores, one contract: content-addressed, atomic, sha256-verified reads.

The S3 path runs against a real S3-protocol server (moto_server on loopback).
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import pytest

from shared.artifacts import (
    ArtifactError,
    ArtifactNotFound,
    AsyncArtifactStore,
    IntegrityError,
    LocalArtifactStore,
    S3ArtifactStore,
    make_store,
)
from shared.artifacts.base import object_key
from shared.events.base import ArtifactRef
from tests.fixtures.s3 import S3_ACCESS_KEY, S3_SECRET_KEY


@pytest.fixture(params=["local", "s3"])
def store(request, tmp_path):
    if request.param == "local":
        return LocalArtifactStore(tmp_path / "store")
    endpoint = request.getfixturevalue("s3_endpoint")
    bucket = f"t-{os.urandom(4).hex()}"
    return S3ArtifactStore(endpoint, S3_ACCESS_KEY, S3_SECRET_KEY, bucket)


def test_put_get_round_trip_is_content_addressed(store):
    data = b"hello artifacts"
    ref = store.put_bytes(data, media_type="text/plain")
    assert ref.sha256 == hashlib.sha256(data).hexdigest()
    assert ref.size_bytes == len(data) and ref.media_type == "text/plain"
    assert ref.uri.endswith(object_key(ref.sha256))
    assert store.exists(ref)
    assert store.get_bytes(ref) == data
    assert store.put_bytes(data).sha256 == ref.sha256  # same bytes, same object


def test_large_file_streams_through_and_verifies(store, tmp_path):
    src = tmp_path / "big.bin"
    src.write_bytes(os.urandom(3 * 1024 * 1024 + 17))
    ref = store.put_file(src)
    out = store.get_file(ref, tmp_path / "out" / "big.bin")
    assert out.read_bytes() == src.read_bytes()
    assert not list((tmp_path / "out").glob("*.part"))


def test_missing_object_is_not_found(store):
    ref = store.put_bytes(b"x")
    ghost = ref.model_copy(
        update={
            "sha256": "0" * 64,
            # Only the key's last two parts (<ab>/<sha256>): a bucket named t-<random hex> may
            # hold the digest's first two characters too (it did: a flaky test).
            "uri": ref.uri.rsplit("/", 2)[0] + "/00/" + "0" * 64,
        }
    )
    with pytest.raises(ArtifactNotFound):
        store.get_bytes(ghost)
    assert not store.exists(ghost)


def test_a_ref_that_lies_about_its_bytes_fails_loudly(store, tmp_path):
    ref = store.put_bytes(b"the real bytes")
    liar = ref.model_copy(update={"size_bytes": ref.size_bytes + 1})
    with pytest.raises(IntegrityError):
        store.get_bytes(liar)
    with pytest.raises(IntegrityError):
        store.get_file(liar, tmp_path / "never.bin")
    assert not (tmp_path / "never.bin").exists(), "a failed read must leave no file behind"


def test_a_ref_from_another_store_is_refused(store):
    foreign = ArtifactRef(
        uri="file:///elsewhere/sha256/ab/" + "ab" * 32, sha256="ab" * 32, size_bytes=1
    )
    with pytest.raises(ArtifactError, match="another store"):
        store.get_bytes(foreign)


def test_local_store_detects_tampering_on_disk(tmp_path):
    store = LocalArtifactStore(tmp_path / "store")
    ref = store.put_bytes(b"original content")
    path = tmp_path / "store" / object_key(ref.sha256)
    assert not os.access(path, os.W_OK) or os.geteuid() == 0, "objects are stored read-only"
    path.chmod(0o644)
    path.write_bytes(b"original c0ntent")  # same size, different bytes
    with pytest.raises(IntegrityError, match="expected sha256"):
        store.get_bytes(ref)


def test_local_put_is_atomic_no_partial_object_visible(tmp_path):
    store = LocalArtifactStore(tmp_path / "store")

    class Exploding:
        def __init__(self):
            self.calls = 0

        def read(self, n=-1):
            self.calls += 1
            if self.calls > 2:
                raise OSError("disk vanished")
            return b"x" * 1024

    with pytest.raises(OSError):
        store._put_stream(Exploding(), "application/octet-stream")
    objects = [p for p in (tmp_path / "store").rglob("*") if p.is_file()]
    assert objects == [], f"nothing may be left behind, found {objects}"


def test_s3_object_damaged_on_the_server_is_refused(s3_endpoint):
    store = S3ArtifactStore(s3_endpoint, S3_ACCESS_KEY, S3_SECRET_KEY, f"t-{os.urandom(4).hex()}")
    ref = store.put_bytes(b"good bytes!")
    # Overwrite the object behind the store's back through the same S3 API.
    import io

    store._client.put_object(store.bucket, object_key(ref.sha256), io.BytesIO(b"evil bytes!"), 11)
    with pytest.raises(IntegrityError):
        store.get_bytes(ref)


def test_credentials_never_show_in_repr(s3_endpoint):
    store = S3ArtifactStore(s3_endpoint, S3_ACCESS_KEY, S3_SECRET_KEY, "repr-bucket")
    assert S3_SECRET_KEY not in repr(store) and S3_ACCESS_KEY not in repr(store)


def test_make_store_names_missing_settings_without_values(tmp_path):
    with pytest.raises(ValueError, match="access_key, secret_key"):
        make_store("s3", endpoint="127.0.0.1:1", bucket="b")
    with pytest.raises(ValueError, match="unknown artifact store kind"):
        make_store("ftp")  # type: ignore[arg-type]
    assert isinstance(make_store("local", root=tmp_path), LocalArtifactStore)


async def test_async_store_runs_off_the_event_loop(tmp_path):
    store = AsyncArtifactStore(LocalArtifactStore(tmp_path / "s"))
    ref = await store.put_bytes(b"async")
    assert await store.get_bytes(ref) == b"async"
    assert await store.exists(ref)
    src = tmp_path / "f.txt"
    src.write_text("file")
    fref = await store.put_file(Path(src))
    assert (await store.get_file(fref, tmp_path / "g.txt")).read_text() == "file"
