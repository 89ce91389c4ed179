"""File names that come from outside (manifests, events) resolve strictly inside one folder.

A manifest lists files by relative name; a hostile one may list `/etc/cron.d/x`, `../../x`,
`C:\\x`, or a name that a symlink already in the folder would carry elsewhere. Every such name
goes through `relative_name` when it is read and `confined` when it is joined to a folder, so
no service joins an outside name to a path by hand.
"""

from __future__ import annotations

import os
from pathlib import Path, PurePosixPath

from .base import ArtifactError

MAX_NAME = 512


class UnsafePathError(ArtifactError):
    """A name that would leave its folder: absolute, `..`, a drive, a backslash, a symlink."""


def relative_name(name: object) -> PurePosixPath:
    """A plain relative POSIX name (`a/b.safetensors`), or UnsafePathError saying why not."""
    if not isinstance(name, str) or not name or len(name) > MAX_NAME:
        raise UnsafePathError(f"file name {str(name)[:80]!r}: not a name of 1-{MAX_NAME} chars")
    if "\\" in name or "\x00" in name or ":" in name:
        raise UnsafePathError(f"file name {name!r}: backslash, NUL or drive separator")
    path = PurePosixPath(name)
    if path.is_absolute():
        raise UnsafePathError(f"file name {name!r}: absolute paths are refused")
    if any(part in {"..", "."} for part in name.split("/")) or "" in name.split("/"):
        raise UnsafePathError(f"file name {name!r}: '..', '.' or empty parts are refused")
    return path


def confined(root: Path, name: object) -> Path:
    """`root / name`, refusing any name (or symlink on the way) that ends outside `root`."""
    rel = relative_name(name)
    base = Path(os.path.realpath(root))
    target = Path(os.path.realpath(base.joinpath(*rel.parts)))
    if target != base and base not in target.parents:
        raise UnsafePathError(f"file name {str(rel)!r} resolves outside {base}")
    return base.joinpath(*rel.parts)
