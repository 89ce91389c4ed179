"""Models and adapters in the artifact store: a directory of files behind one JSON manifest.

The manifest's ArtifactRef is the model's identity: its sha256 covers every file's sha256, so
two imports of the same weights are the same model, and a changed byte is a different one.
Only safetensors weights are accepted: nothing that unpickles is ever stored or fetched.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any, Literal

from shared.artifacts import ArtifactStore, IntegrityError
from shared.events.base import ArtifactRef

FORMAT = "distillery.model.v1"
MANIFEST_MEDIA_TYPE = "application/vnd.distillery.model+json"
# Pickle-based or code-carrying files are refused outright, whatever their contents.
_REFUSED_SUFFIXES = {".bin", ".pt", ".pth", ".pkl", ".pickle", ".ckpt", ".py"}
_WEIGHT_SUFFIX = ".safetensors"

Kind = Literal["model", "adapter"]


class ModelFormatError(ValueError):
    """The directory or manifest is not a model Distillery will store or load."""


def _files(directory: Path) -> list[Path]:
    files = sorted(p for p in directory.rglob("*") if p.is_file() and not p.name.startswith("."))
    refused = [p.name for p in files if p.suffix in _REFUSED_SUFFIXES]
    if refused:
        raise ModelFormatError(f"{directory}: refusing non-safetensors files {refused}")
    if not any(p.suffix == _WEIGHT_SUFFIX for p in files):
        raise ModelFormatError(f"{directory}: no .safetensors weights found")
    return files


def store_model_dir(
    store: ArtifactStore,
    directory: Path,
    name: str,
    *,
    kind: Kind = "model",
    base_model: str | None = None,
    extra: dict[str, Any] | None = None,
) -> ArtifactRef:
    """Upload every file, then the manifest; return the manifest's ref (sync; use a thread)."""
    directory = Path(directory)
    files = {
        str(path.relative_to(directory)): store.put_file(path).model_dump(mode="json")
        for path in _files(directory)
    }
    manifest: dict[str, Any] = {"format": FORMAT, "kind": kind, "name": name, "files": files}
    if base_model is not None:
        manifest["base_model"] = base_model
    if extra:
        manifest["extra"] = extra
    body = json.dumps(manifest, sort_keys=True, separators=(",", ":")).encode()
    return store.put_bytes(body, media_type=MANIFEST_MEDIA_TYPE)


def read_manifest(store: ArtifactStore, ref: ArtifactRef) -> dict[str, Any]:
    manifest = json.loads(store.get_bytes(ref))
    if not isinstance(manifest, dict) or manifest.get("format") != FORMAT:
        raise ModelFormatError(f"{ref.uri} is not a {FORMAT} manifest")
    for rel in manifest["files"]:
        if Path(rel).suffix in _REFUSED_SUFFIXES or ".." in Path(rel).parts:
            raise ModelFormatError(f"{ref.uri}: refusing file {rel!r}")
    return manifest


def fetch_model_dir(store: ArtifactStore, ref: ArtifactRef, dest: Path) -> Path:
    """Materialise a stored model into `dest`, every file verified by sha256.

    A finished `dest` is reused (its marker names the manifest sha), so workers can cache
    models across jobs; a half-fetched one is removed and fetched again.
    """
    dest = Path(dest)
    marker = dest / ".distillery-manifest"
    if marker.exists() and marker.read_text() == ref.sha256:
        return dest
    manifest = read_manifest(store, ref)
    staging = dest.with_name(dest.name + ".part")
    shutil.rmtree(staging, ignore_errors=True)
    for rel, raw in manifest["files"].items():
        file_ref = ArtifactRef.model_validate(raw)
        store.get_file(file_ref, staging / rel)
    (staging / ".distillery-manifest").write_text(ref.sha256)
    shutil.rmtree(dest, ignore_errors=True)
    staging.rename(dest)
    return dest


__all__ = [
    "FORMAT",
    "IntegrityError",
    "ModelFormatError",
    "fetch_model_dir",
    "read_manifest",
    "store_model_dir",
]
