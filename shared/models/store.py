"""Models and adapters in the artifact store: a directory of files behind one JSON manifest.

The manifest's ArtifactRef is the model's identity: its sha256 covers every file's sha256, so
two imports of the same weights are the same model, and a changed byte is a different one.
Only safetensors weights are accepted: nothing that unpickles is ever stored or fetched.
"""

from __future__ import annotations

import json
import shutil
import struct
from pathlib import Path
from typing import Any, Literal

from pydantic import ValidationError

from shared.artifacts import ArtifactStore, IntegrityError
from shared.artifacts.paths import UnsafePathError, confined, relative_name
from shared.events.base import ArtifactRef

FORMAT = "distillery.model.v1"
MANIFEST_MEDIA_TYPE = "application/vnd.distillery.model+json"
# Pickle-based or code-carrying files are refused outright, whatever their contents.
_REFUSED_SUFFIXES = {".bin", ".pt", ".pth", ".pkl", ".pickle", ".ckpt", ".py"}
_WEIGHT_SUFFIX = ".safetensors"
_MAX_FILES = 4096
# safetensors: 8-byte little-endian header length, then a JSON header; real ones are KBs-MBs.
_MAX_HEADER = 100 * 1024 * 1024

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
    """The manifest, checked: every file a plain relative name with a valid ref."""
    try:
        manifest = json.loads(store.get_bytes(ref))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ModelFormatError(f"{ref.uri} is not a JSON manifest: {exc}") from None
    if not isinstance(manifest, dict) or manifest.get("format") != FORMAT:
        raise ModelFormatError(f"{ref.uri} is not a {FORMAT} manifest")
    files = manifest.get("files")
    if not isinstance(files, dict) or not 0 < len(files) <= _MAX_FILES:
        raise ModelFormatError(f"{ref.uri}: 'files' must map 1-{_MAX_FILES} names to refs")
    for rel, raw in files.items():
        try:
            relative_name(rel)
            ArtifactRef.model_validate(raw)
        except (UnsafePathError, ValidationError) as exc:
            raise ModelFormatError(f"{ref.uri}: refusing file {str(rel)[:200]!r}: {exc}") from None
        if Path(rel).suffix in _REFUSED_SUFFIXES:
            raise ModelFormatError(f"{ref.uri}: refusing file {rel!r}")
    return manifest


def check_safetensors(path: Path) -> None:
    """Refuse a file named .safetensors that is not one (pickle bytes, truncated, garbage).

    Checked where it is fetched, so the error is permanent on the first delivery instead of
    a crash inside a worker that looks transient and is retried.
    """
    size = path.stat().st_size
    with path.open("rb") as f:
        head = f.read(8)
        if len(head) < 8:
            raise ModelFormatError(f"{path.name}: not safetensors (shorter than its header)")
        (length,) = struct.unpack("<Q", head)
        if not 2 <= length <= min(_MAX_HEADER, size - 8):
            raise ModelFormatError(f"{path.name}: not safetensors (header length {length})")
        try:
            header = json.loads(f.read(length))
        except (UnicodeDecodeError, json.JSONDecodeError):
            raise ModelFormatError(f"{path.name}: not safetensors (header is not JSON)") from None
    if not isinstance(header, dict):
        raise ModelFormatError(f"{path.name}: not safetensors (header is not an object)")
    body = size - 8 - length
    for name, info in header.items():
        if name == "__metadata__":
            continue
        offsets = info.get("data_offsets") if isinstance(info, dict) else None
        if (
            not isinstance(offsets, list)
            or len(offsets) != 2
            or not all(isinstance(o, int) for o in offsets)
            or not 0 <= offsets[0] <= offsets[1] <= body
        ):
            raise ModelFormatError(f"{path.name}: not safetensors (tensor {name!r} offsets)")


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
    staging.mkdir(parents=True)
    for rel, raw in manifest["files"].items():
        target = confined(staging, rel)
        store.get_file(ArtifactRef.model_validate(raw), target)
        if target.suffix == _WEIGHT_SUFFIX:
            check_safetensors(target)
    (staging / ".distillery-manifest").write_text(ref.sha256)
    shutil.rmtree(dest, ignore_errors=True)
    staging.rename(dest)
    return dest


__all__ = [
    "FORMAT",
    "IntegrityError",
    "ModelFormatError",
    "check_safetensors",
    "fetch_model_dir",
    "read_manifest",
    "store_model_dir",
]
