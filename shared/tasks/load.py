"""Reading task specs: YAML from a user, JSON from the artifact store, errors that name fields."""

from __future__ import annotations

from pathlib import Path

import yaml
from pydantic import ValidationError

from shared.tasks.spec import TaskSpec


class TaskSpecError(ValueError):
    """A spec that cannot be used, with one `field.path: problem` line per problem."""

    def __init__(self, source: str, problems: list[str]) -> None:
        self.source = source
        self.problems = problems
        super().__init__(f"{source}: invalid task spec\n" + "\n".join(f"  {p}" for p in problems))


def _field(loc: tuple[int | str, ...]) -> str:
    # pydantic puts union members and validator names into loc; a user wants the YAML path.
    parts = [
        str(p) for p in loc if not (isinstance(p, str) and ("[" in p or p.startswith("function")))
    ]
    return ".".join(parts) or "(top level)"


def problems_of(error: ValidationError) -> list[str]:
    lines = []
    for item in error.errors(include_url=False):
        message = item["msg"].removeprefix("Value error, ")
        loc = _field(item["loc"])
        # Cross-field checks name their own field; don't prefix them with "(top level)".
        lines.append(message if loc == "(top level)" and ":" in message else f"{loc}: {message}")
    return sorted(set(lines))


def parse_spec(data: dict[str, object], source: str = "spec") -> TaskSpec:
    try:
        return TaskSpec.model_validate(data)
    except ValidationError as exc:
        raise TaskSpecError(source, problems_of(exc)) from None


def load_spec(path: Path) -> TaskSpec:
    path = Path(path)
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise TaskSpecError(str(path), ["file not found"]) from None
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"line {mark.line + 1}, column {mark.column + 1}: " if mark else ""
        raise TaskSpecError(str(path), [f"{where}not valid YAML ({exc})"]) from None
    if not isinstance(data, dict):
        raise TaskSpecError(str(path), ["(top level): expected a mapping of fields"])
    return parse_spec(data, str(path))


def spec_from_json(data: bytes, source: str = "stored spec") -> TaskSpec:
    """A stored (applied) spec, as the services read it from the artifact store."""
    try:
        return TaskSpec.model_validate_json(data)
    except ValidationError as exc:
        raise TaskSpecError(source, problems_of(exc)) from None
