"""Reading task specs: YAML from a user, JSON from the artifact store, errors that name fields."""

from __future__ import annotations

import json
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


# Union members appear in loc by type name ("str", "ArtifactRef"); field names never do.
_TYPE_TAGS = {"str", "constrained-str", "int", "float", "bool", "dict", "list", "none"}


def _is_tag(part: int | str) -> bool:
    return isinstance(part, str) and (
        "[" in part or part.startswith("function") or part in _TYPE_TAGS or part[:1].isupper()
    )


def _field(loc: tuple[int | str, ...]) -> str:
    # pydantic puts union members and validator names into loc; a user wants the YAML path.
    return ".".join(str(p) for p in loc if not _is_tag(p)) or "(top level)"


def problems_of(error: ValidationError) -> list[str]:
    items = error.errors(include_url=False)
    # A value that fits no member of `ArtifactRef | str` gets one error per member; before
    # apply the user writes a path, so the string member's complaint is the one to show.
    strs = {"str", "constrained-str"}
    str_members = {_field(i["loc"]) for i in items if i["loc"] and i["loc"][-1] in strs}
    lines = []
    for item in items:
        loc = _field(item["loc"])
        if loc in str_members and item["loc"][-1] not in strs and _is_tag(item["loc"][-1]):
            continue
        message = item["msg"].removeprefix("Value error, ")
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
    except (OSError, UnicodeDecodeError) as exc:
        # A folder, no permission, a binary file: say so instead of a traceback.
        raise TaskSpecError(str(path), [f"cannot read the file: {exc}"]) from None
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"line {mark.line + 1}, column {mark.column + 1}: " if mark else ""
        raise TaskSpecError(str(path), [f"{where}not valid YAML ({exc})"]) from None
    if not isinstance(data, dict):
        raise TaskSpecError(str(path), ["(top level): expected a mapping of fields"])
    if isinstance(data.get("output_schema"), str):
        data["output_schema"] = _schema_file(path, data["output_schema"])
    return parse_spec(data, str(path))


def _schema_file(spec_path: Path, name: str) -> dict[str, object]:
    """`output_schema: schema.json` names a JSON file next to the spec; apply inlines it."""
    source = spec_path.parent / name
    try:
        schema = json.loads(source.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise TaskSpecError(str(spec_path), [f"output_schema: file {source} not found"]) from None
    except (OSError, UnicodeDecodeError, ValueError) as exc:
        problem = f"output_schema: {source} is not a JSON file ({exc})"
        raise TaskSpecError(str(spec_path), [problem]) from None
    if not isinstance(schema, dict):
        raise TaskSpecError(str(spec_path), [f"output_schema: {source} must hold a JSON object"])
    return schema


def spec_from_json(data: bytes, source: str = "stored spec") -> TaskSpec:
    """A stored (applied) spec, as the services read it from the artifact store."""
    try:
        return TaskSpec.model_validate_json(data)
    except ValidationError as exc:
        raise TaskSpecError(source, problems_of(exc)) from None
