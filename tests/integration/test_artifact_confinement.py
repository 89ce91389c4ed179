"""Names from outside (manifests) stay inside their folder; fake weights are refused at fetch.

Real stores (a local folder and an S3 server on loopback would behave the same: the names are
checked before any byte is written), real safetensors files, real pickle bytes.
"""

from __future__ import annotations

import json
import os
import pickle
from pathlib import Path

import pytest
from safetensors.numpy import save_file

from shared.artifacts import LocalArtifactStore
from shared.artifacts.paths import UnsafePathError, confined, relative_name
from shared.models import ModelFormatError, fetch_model_dir, read_manifest, store_model_dir
from shared.models.store import FORMAT, MANIFEST_MEDIA_TYPE

HOSTILE = [
    "/tmp/owned.safetensors",
    "../owned.safetensors",
    "a/../../owned.safetensors",
    "C:\\owned.safetensors",
    "a\\..\\owned.safetensors",
    "./a.safetensors",
    "a//b.safetensors",
    "",
    "x" * 600,
]


@pytest.mark.parametrize("name", HOSTILE)
def test_hostile_names_are_refused(name: str):
    with pytest.raises(UnsafePathError):
        relative_name(name)


def test_plain_names_pass():
    assert str(relative_name("sub/model-00001-of-00002.safetensors")).startswith("sub/")


def test_a_symlink_inside_the_folder_cannot_carry_a_name_out(tmp_path: Path):
    root, outside = tmp_path / "root", tmp_path / "outside"
    root.mkdir()
    outside.mkdir()
    os.symlink(outside, root / "link")
    with pytest.raises(UnsafePathError, match="outside"):
        confined(root, "link/x.safetensors")
    assert confined(root, "ok/x.safetensors") == root.resolve() / "ok" / "x.safetensors"


def _weights(folder: Path) -> Path:
    import numpy as np

    folder.mkdir(parents=True, exist_ok=True)
    save_file({"w": np.zeros((2, 2), dtype=np.float32)}, str(folder / "adapter.safetensors"))
    (folder / "adapter_config.json").write_text("{}")
    return folder


def _manifest(store: LocalArtifactStore, files: dict[str, bytes]) -> object:
    refs = {name: store.put_bytes(data).model_dump(mode="json") for name, data in files.items()}
    body = {"format": FORMAT, "kind": "adapter", "name": "t", "files": refs}
    return store.put_bytes(json.dumps(body).encode(), media_type=MANIFEST_MEDIA_TYPE)


@pytest.mark.parametrize("name", ["/tmp/distillery-owned.safetensors", "../../owned.json"])
def test_a_manifest_naming_a_file_outside_is_refused_before_anything_is_written(
    tmp_path: Path, name: str
):
    store = LocalArtifactStore(tmp_path / "store")
    ref = _manifest(store, {name: b"x", "adapter.safetensors": b"y"})
    with pytest.raises(ModelFormatError, match="refusing file"):
        read_manifest(store, ref)
    with pytest.raises(ModelFormatError):
        fetch_model_dir(store, ref, tmp_path / "work" / "m")
    assert not Path("/tmp/distillery-owned.safetensors").exists()
    assert not (tmp_path / "owned.json").exists()


def test_pickle_bytes_named_safetensors_are_refused_at_fetch(tmp_path: Path):
    store = LocalArtifactStore(tmp_path / "store")
    ref = _manifest(store, {"adapter.safetensors": pickle.dumps({"w": [1, 2, 3]})})
    with pytest.raises(ModelFormatError, match="not safetensors"):
        fetch_model_dir(store, ref, tmp_path / "work" / "m")
    assert not (tmp_path / "work" / "m").exists()


def test_truncated_safetensors_are_refused(tmp_path: Path):
    good = _weights(tmp_path / "good") / "adapter.safetensors"
    store = LocalArtifactStore(tmp_path / "store")
    ref = _manifest(store, {"adapter.safetensors": good.read_bytes()[:-4]})
    with pytest.raises(ModelFormatError, match="offsets"):
        fetch_model_dir(store, ref, tmp_path / "work" / "m")


def test_a_real_adapter_round_trips(tmp_path: Path):
    store = LocalArtifactStore(tmp_path / "store")
    ref = store_model_dir(store, _weights(tmp_path / "a"), "t", kind="adapter")
    out = fetch_model_dir(store, ref, tmp_path / "work" / "m")
    assert (out / "adapter.safetensors").read_bytes() == (
        tmp_path / "a" / "adapter.safetensors"
    ).read_bytes()
