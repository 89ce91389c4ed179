"""The files a task spec names (golden set, probe set, general text), checked before apply.

Every problem is reported as `field: file:line: what is wrong`, all at once, so a user fixes a
golden set in one pass rather than one error per apply.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from shared.events.base import ArtifactRef
from shared.tasks.load import TaskSpecError
from shared.tasks.spec import TaskSpec

MAX_LISTED_PROBLEMS = 20
GOLDEN_KEYS: dict[str, type] = {
    "id": str,
    "input": str,
    "output": str,
    "use_case": str,
    "negative": bool,
}
PROBE_KEYS: dict[str, type] = {"id": str, "kind": str, "prompt": str, "answer": str}


@dataclass(frozen=True)
class SpecFiles:
    """The files' bytes as read and checked: exactly these are stored, never a later read."""

    golden: bytes
    golden_rows: int
    probe: bytes | None
    general: bytes | None


def check_files(spec: TaskSpec, spec_path: Path) -> SpecFiles:
    """The spec's files, every row checked; raises TaskSpecError listing all problems."""
    problems: list[str] = []
    golden = _read(spec_path, "golden_set", spec.golden_set, problems)
    probe = _read(spec_path, "probe_set", spec.probe_set, problems)
    general = _read(spec_path, "general_text", spec.general_text, problems)
    rows = 0
    if golden is not None:
        rows = _check_golden(spec, golden, spec.golden_set, problems)
    if probe is not None:
        _check_jsonl("probe_set", probe, spec.probe_set, PROBE_KEYS, problems, lambda *_: None)
    if general is not None:
        _check_text(general, spec.general_text, problems)
    if problems:
        raise TaskSpecError(str(spec_path), _capped(problems))
    assert golden is not None  # a missing golden set is a problem, raised above
    return SpecFiles(golden, rows, probe, general)


def _read(spec_path: Path, field: str, value: object, problems: list[str]) -> bytes | None:
    if value is None:
        return None
    if isinstance(value, ArtifactRef):
        # Uploading happens here, so an input spec names files, never artifacts.
        problems.append(f"{field}: give a file path relative to the spec, not an artifact ref")
        return None
    path = spec_path.parent / str(value)
    if not path.is_file():
        problems.append(f"{field}: file {value} not found (looked for {path})")
        return None
    try:
        return path.read_bytes()
    except OSError as exc:
        problems.append(f"{field}: cannot read {value}: {exc.strerror or exc}")
        return None


def _decode(field: str, data: bytes, shown: object, problems: list[str]) -> str | None:
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        problems.append(f"{field}: {shown} is not UTF-8 text ({exc.reason} at byte {exc.start})")
        return None


def _check_golden(spec: TaskSpec, data: bytes, shown: object, problems: list[str]) -> int:
    use_cases = [u.name for u in spec.use_cases]
    validator = None
    if spec.output_schema is not None:
        from jsonschema import Draft202012Validator

        validator = Draft202012Validator(spec.output_schema)
    expected = spec.negatives.expected

    def check_row(row: dict[str, Any], where: str) -> None:
        if row["use_case"] not in use_cases:
            problems.append(f"{where}: use_case {row['use_case']!r} is not one of {use_cases}")
        if validator is None:
            return
        try:
            output = json.loads(row["output"])
        except ValueError as exc:
            problems.append(f"{where}: output is not JSON ({exc})")
            return
        errors = sorted(validator.iter_errors(output), key=lambda e: list(e.absolute_path))
        for error in errors:
            at = "/".join(str(p) for p in error.absolute_path)
            problems.append(f"{where}: output{'.' + at if at else ''}: {error.message}")
        if row["negative"] and isinstance(output, dict) and not errors:
            wrong = {k: v for k, v in expected.items() if output.get(k) != v}
            if wrong:
                problems.append(
                    f"{where}: a negative row's output must match negatives.expected {wrong}"
                )

    return _check_jsonl("golden_set", data, shown, GOLDEN_KEYS, problems, check_row)


def _check_jsonl(
    field: str,
    data: bytes,
    shown: object,
    keys: dict[str, type],
    problems: list[str],
    check_row: Callable[[dict[str, Any], str], None],
) -> int:
    """Each non-blank line one JSON object with `keys` of their types; ids unique."""
    seen_ids: dict[str, int] = {}
    rows = 0
    text = _decode(field, data, shown, problems)
    if text is None:
        return 0
    lines = text.splitlines()
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        where = f"{field}: {shown}:{number}"
        try:
            row = json.loads(line)
        except ValueError as exc:
            problems.append(f"{where}: not valid JSON ({exc})")
            continue
        if not isinstance(row, dict):
            problems.append(f"{where}: expected a JSON object")
            continue
        if missing := [k for k in keys if k not in row]:
            problems.append(f"{where}: missing {', '.join(missing)}")
            continue
        if bad := [k for k, t in keys.items() if not _is_a(row[k], t)]:
            kinds = ", ".join(f"{k} must be {_KIND[keys[k]]}" for k in bad)
            problems.append(f"{where}: {kinds}")
            continue
        if row["id"] in seen_ids:
            problems.append(f"{where}: id {row['id']!r} repeats line {seen_ids[row['id']]}")
        seen_ids.setdefault(row["id"], number)
        check_row(row, where)
        rows += 1
    if not rows and not any(p.startswith(f"{field}: {shown}") for p in problems):
        problems.append(f"{field}: {shown} has no rows")
    return rows


_KIND = {str: "a non-empty string", bool: "true or false"}


def _is_a(value: object, kind: type) -> bool:
    if kind is str:
        return isinstance(value, str) and bool(value.strip())
    return isinstance(value, kind)


def _check_text(data: bytes, shown: object, problems: list[str]) -> None:
    text = _decode("general_text", data, shown, problems)
    if text is not None and not text.strip():
        problems.append(f"general_text: {shown} is empty")


def _capped(problems: list[str]) -> list[str]:
    if len(problems) <= MAX_LISTED_PROBLEMS:
        return problems
    rest = len(problems) - MAX_LISTED_PROBLEMS
    return [*problems[:MAX_LISTED_PROBLEMS], f"... and {rest} more problem(s)"]
