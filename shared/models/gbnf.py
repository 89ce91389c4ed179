"""The task's schema as a llama.cpp GBNF grammar that admits exactly what xgrammar admits.

Why not llama.cpp's own `json_object` + `schema`: its converter lets a space follow every
brace, colon and comma (`SPACE_RULE = '" "?'`), where the evaluator's and quantizer's xgrammar
grammar allows only the compact form (decoding.py). A model that prefers `{ "` over `{"` is
then served a different token path than the one measured. On SmolLM2-135M-Instruct and 12
ticket-triage golden rows, 7 of 12 served answers differed in their values from the measured
ones that way; with this grammar, 12 of 12 were the same text.

So the grammar is not written twice: `schema_gbnf` asks xgrammar for its own grammar of the
schema (same call as decoding.compile_grammar) and rewrites its EBNF into llama.cpp's dialect:

- lookahead assertions `(= ...)` are dropped: xgrammar uses them to prune its search, and they
  never change which strings a JSON-schema grammar accepts;
- `{m, -1}` (unbounded) becomes `{m,}`, `{m, n}` becomes `{m,n}`;
- `\\0` in a literal or class becomes `\\x00`;
- `_` in rule names becomes `-` (llama.cpp names are `[a-zA-Z0-9-]+`).

Anything else xgrammar might emit and llama.cpp would not parse is refused here
(GbnfError), never sent: llama.cpp's parser aborts the whole server process on a bad grammar.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from typing import Any

from .decoding import SEPARATORS, ordered_schema

_NAME = re.compile(r"[A-Za-z0-9_]")
_ALLOWED = set(" \t\n()|*+?:=-") | {"{", "}", ","}


class GbnfError(ValueError):
    """xgrammar emitted a construct this converter does not know."""


def schema_gbnf(schema: Mapping[str, Any]) -> str:
    """The GBNF grammar for `schema`, compact JSON, root rule `root`."""
    import xgrammar as xgr

    grammar = xgr.Grammar.from_json_schema(
        json.dumps(ordered_schema(schema)),
        any_whitespace=False,
        separators=SEPARATORS,
        strict_mode=True,
    )
    return to_gbnf(str(grammar))


def _quoted_end(text: str, start: int) -> int:
    """The index just past the literal or class that opens at `start`."""
    close = '"' if text[start] == '"' else "]"
    i = start + 1
    while i < len(text) and text[i] != close:
        i += 2 if text[i] == "\\" else 1
    if i >= len(text):
        raise GbnfError(f"unterminated {text[start]} at {start}")
    return i + 1


def _literal(text: str) -> str:
    """A literal or class with `\\0` spelt `\\x00`; every other escape kept as it is."""
    out, i = [], 0
    while i < len(text):
        if text[i] == "\\" and i + 1 < len(text):
            out.append("\\x00" if text[i + 1] == "0" else text[i : i + 2])
            i += 2
        else:
            out.append(text[i])
            i += 1
    return "".join(out)


def _lookahead_end(text: str, start: int) -> int:
    depth, i = 0, start
    while True:
        if i >= len(text):
            raise GbnfError(f"unterminated lookahead at {start}")
        if text[i] in '"[':
            i = _quoted_end(text, i)
            continue
        depth += {"(": 1, ")": -1}.get(text[i], 0)
        i += 1
        if depth == 0:
            return i


def _repeat(body: str) -> str:
    parts = [p.strip() for p in body.split(",")]
    if len(parts) == 1 and parts[0].isdigit():
        return "{" + parts[0] + "}"
    if len(parts) != 2 or not parts[0].isdigit() or not re.fullmatch(r"-1|\d+", parts[1]):
        raise GbnfError(f"repetition {{{body}}}")
    high = "" if parts[1] == "-1" else parts[1]
    return "{" + parts[0] + "," + high + "}"


def to_gbnf(ebnf: str) -> str:
    """xgrammar's EBNF text in llama.cpp's GBNF dialect (see the module's docstring)."""
    out: list[str] = []
    i = 0
    while i < len(ebnf):
        c = ebnf[i]
        if c in '"[':
            end = _quoted_end(ebnf, i)
            out.append(_literal(ebnf[i:end]))
            i = end
        elif ebnf.startswith("(=", i):
            i = _lookahead_end(ebnf, i)
        elif c == "{":
            end = ebnf.find("}", i)
            if end < 0:
                raise GbnfError(f"unterminated repetition at {i}")
            out.append(_repeat(ebnf[i + 1 : end]))
            i = end + 1
        elif _NAME.match(c):
            out.append("-" if c == "_" else c)
            i += 1
        elif c in _ALLOWED:
            out.append(c)
            i += 1
        else:
            raise GbnfError(f"{c!r} at {i} of xgrammar's grammar has no GBNF form here")
    return "".join(out)
