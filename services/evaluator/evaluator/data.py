"""The evaluation data formats shared with other services, read strictly.

Golden set rows: {"id", "input", "output", "use_case", "negative"}; probe set rows:
{"id", "kind", "prompt", "answer"}. A malformed file is a bad input, not a reason to retry.
"""

from __future__ import annotations

import json
from typing import TypeVar

from pydantic import BaseModel, ConfigDict, Field, ValidationError


class DataError(ValueError):
    """A malformed golden or probe set; the service turns it into a PermanentError."""


class _Row(BaseModel):
    # Extra keys are tolerated: producers may add optional fields within a version.
    model_config = ConfigDict(frozen=True, extra="ignore")


class GoldenRow(_Row):
    id: str = Field(min_length=1)
    input: str
    output: str
    use_case: str
    negative: bool = False


class ProbeRow(_Row):
    id: str = Field(min_length=1)
    kind: str
    prompt: str
    answer: str


R = TypeVar("R", bound=_Row)


def parse_jsonl(data: bytes, row_cls: type[R], what: str) -> list[R]:
    rows: list[R] = []
    for number, line in enumerate(data.decode("utf-8").splitlines(), start=1):
        if not line.strip():
            continue
        try:
            rows.append(row_cls.model_validate(json.loads(line)))
        except (ValueError, ValidationError) as exc:
            raise DataError(f"{what} line {number}: {exc}") from None
    ids = [r.id for r in rows]  # type: ignore[attr-defined]
    if len(set(ids)) != len(ids):
        raise DataError(f"{what}: ids are not unique")
    if not rows:
        raise DataError(f"{what} is empty")
    return rows
