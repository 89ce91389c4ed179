"""Text normalisation: one canonical form for every row, before anything compares rows.

Two forms exist on purpose. `normalise_text` is what trains the student: NFC, no control or
zero-width characters, single spaces, at most one blank line; case and punctuation are kept.
`word_tokens` is only for comparing texts (dedup, decontamination): NFKC, case-folded, words
only, so "Refund, please!" and "refund please" compare equal.
"""

from __future__ import annotations

import json
import re
import unicodedata
from typing import Any

# Cc (controls) and Cf (zero-width, bidi marks) carry no meaning for the student and defeat
# exact-duplicate hashing; newline and tab are the only controls kept (tab becomes a space).
_KEEP = {"\n", "\t"}
_HSPACE = re.compile(r"[^\S\n]+")
_BLANK_LINES = re.compile(r"\n{3,}")
_WORD = re.compile(r"\w+")
_ASCII_NON_WORD = str.maketrans(
    {chr(c): " " for c in range(128) if not (chr(c).isalnum() or chr(c) == "_")}
)


def _visible(ch: str) -> bool:
    return ch in _KEEP or unicodedata.category(ch) not in {"Cc", "Cf", "Cs", "Co"}


def normalise_text(text: str) -> str:
    text = unicodedata.normalize("NFC", text.replace("\r\n", "\n").replace("\r", "\n"))
    if not text.isascii() or any(ord(c) < 32 and c not in _KEEP for c in text):
        text = "".join(c for c in text if _visible(c))
    lines = (_HSPACE.sub(" ", line).strip() for line in text.split("\n"))
    return _BLANK_LINES.sub("\n\n", "\n".join(lines)).strip()


def word_tokens(text: str) -> list[str]:
    if text.isascii():
        # Same result as the general path (NFKC and casefold are identities past lower() on
        # ASCII), at half the cost: most tickets are ASCII.
        return text.lower().translate(_ASCII_NON_WORD).split()
    return _WORD.findall(unicodedata.normalize("NFKC", text).casefold())


def map_strings(value: Any, fn) -> Any:
    """Apply `fn` to every string inside a parsed JSON value, keys left alone."""
    if isinstance(value, str):
        return fn(value)
    if isinstance(value, list):
        return [map_strings(v, fn) for v in value]
    if isinstance(value, dict):
        return {k: map_strings(v, fn) for k, v in value.items()}
    return value


def dump_json(value: Any) -> str:
    # Key order as the teacher wrote it (it mirrors the schema); one spacing style throughout,
    # so the student learns one format rather than the teacher's whims.
    return json.dumps(value, ensure_ascii=False)


def parse_json(text: str) -> tuple[bool, Any]:
    try:
        return True, json.loads(text)
    except ValueError:
        return False, None


def normalise_output(output: str, structured: bool) -> str:
    """A structured (schema) output is re-serialised canonically; invalid JSON is left as is
    so the schema filter can name the problem."""
    if not structured:
        return normalise_text(output)
    ok, value = parse_json(output)
    if not ok:
        return normalise_text(output)
    return dump_json(map_strings(value, normalise_text))


def chat_row(
    row_id: str, use_case: str, negative: bool, system: str, user: str, assistant: str
) -> dict[str, Any]:
    """The curated dataset row shared with the trainer and evaluator."""
    return {
        "id": row_id,
        "use_case": use_case,
        "negative": negative,
        "messages": [
            {"role": "system", "content": system},
            {"role": "user", "content": user},
            {"role": "assistant", "content": assistant},
        ],
    }
