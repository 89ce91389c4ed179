"""Reading rows: a synth batch (or a feedback dataset, in the same format) and a published
dataset's chat rows, into `domain.Row`s (split off domain.py for size)."""

from __future__ import annotations

import hashlib
import json

from .domain import Rejection, Row
from .normalize import parse_json


class NotJsonl(ValueError):
    """A batch unreadable as a whole: retrying or rejecting single rows cannot fix it."""


def parse_rows(data: bytes) -> tuple[list[Row], list[Rejection]]:
    """Synth batch JSONL; a line that is not a valid row is rejected as malformed, not fatal.

    Bytes that are not UTF-8, or lines none of which is a JSON object, are not a batch with bad
    rows but a broken artifact: NotJsonl, so the stage gives up instead of reporting every line.
    """
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise NotJsonl(f"not UTF-8 (invalid byte at offset {exc.start})") from None
    rows: list[Row] = []
    bad: list[Rejection] = []
    objects = 0
    for n, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        ok, raw = parse_json(line)
        if ok and isinstance(raw, dict):
            objects += 1
        try:
            if not ok or not isinstance(raw, dict):
                raise ValueError("not a JSON object")
            text_in, text_out = raw["input"], raw["output"]
            if not isinstance(text_in, str) or not isinstance(text_out, str):
                raise ValueError("input and output must be strings")
            row_id = str(raw.get("id") or hashlib.sha256(text_in.encode()).hexdigest())
            rows.append(
                Row(row_id, str(raw["use_case"]), bool(raw.get("negative")), text_in, text_out)
            )
        except (KeyError, ValueError) as exc:
            bad.append(Rejection(f"line-{n}", "", "malformed", f"line {n}: {exc!s}"[:300]))
    if bad and not objects:
        raise NotJsonl(f"none of its {len(bad)} lines is a JSON object")
    return rows, bad


def parse_chat_rows(data: bytes) -> list[Row]:
    """Rows of a published dataset (chat format), to carry them into the next iteration."""
    rows = []
    for line in data.decode().splitlines():
        if line.strip():
            raw = json.loads(line)
            by_role = {m["role"]: m["content"] for m in raw["messages"]}
            rows.append(
                Row(
                    raw["id"],
                    raw["use_case"],
                    raw["negative"],
                    by_role["user"],
                    by_role["assistant"],
                )
            )
    return rows
