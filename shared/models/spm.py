"""A sentencepiece `tokenizer.model` for a model whose only tokenizer is a tokenizer.json.

llama.cpp's GGUF converter reads a sentencepiece-style vocabulary (Gemma's, Llama 2's) from
`tokenizer.model`; without that file it takes the tokenizer.json as a GPT-2-style BPE and
refuses a pre-tokenizer it does not know ("BPE pre-tokenizer was not recognized"). A model
imported from a GGUF (Gemma 3 270M) has only the tokenizer.json that transformers made from
the GGUF, so its merged student could not become a GGUF again.

The sentencepiece model written here carries exactly what the converter reads: every piece,
its type (byte, control, unknown, normal) and a score. llama.cpp's sentencepiece tokenizer
merges the adjacent pair whose merged piece scores highest, so only the scores' order among
merged pieces matters; transformers built the tokenizer.json's merge list in that order
(from the GGUF's scores), so a piece's score here is minus the rank of the first merge that
makes it. `tests/integration/test_spm_vocab.py` checks that llama.cpp tokenizes text the
way the tokenizer.json does. The file is hand-encoded protobuf: three message types, no
protobuf runtime needed.
"""

from __future__ import annotations

import json
import struct
from pathlib import Path
from typing import Any

FILE = "tokenizer.model"
# sentencepiece's ModelProto.SentencePiece.Type
NORMAL, UNKNOWN, CONTROL, USER_DEFINED, BYTE = 1, 2, 3, 4, 6
BPE = 2  # TrainerSpec.ModelType


def is_sentencepiece_style(tokenizer: dict[str, Any]) -> bool:
    """A BPE over '▁'-joined words with byte fallback: sentencepiece's, not GPT-2's."""
    model = tokenizer.get("model") or {}
    normalizer = tokenizer.get("normalizer") or {}
    steps = normalizer.get("normalizers", [normalizer])
    replaces_space = any(s.get("type") == "Replace" and s.get("content") == "▁" for s in steps if s)
    return model.get("type") == "BPE" and bool(model.get("byte_fallback")) and replaces_space


def ensure(model_dir: Path) -> Path | None:
    """Write `tokenizer.model` into `model_dir` where the converter needs one; its path, or
    None when the folder has one already or its tokenizer is not sentencepiece-style."""
    target = Path(model_dir) / FILE
    source = Path(model_dir) / "tokenizer.json"
    if target.exists() or not source.exists():
        return None
    tokenizer = json.loads(source.read_text(encoding="utf-8"))
    if not is_sentencepiece_style(tokenizer):
        return None
    tmp = target.with_name(f".{FILE}.tmp")
    tmp.write_bytes(encode(tokenizer))
    tmp.replace(target)  # whole or absent
    return target


def pieces(tokenizer: dict[str, Any]) -> list[tuple[str, float, int]]:
    """(piece, score, type) for every id, in id order."""
    model = tokenizer["model"]
    by_id = {i: p for p, i in model["vocab"].items()}
    added = {t["id"]: t for t in tokenizer.get("added_tokens", [])}
    size = max([*by_id, *added]) + 1
    rank: dict[str, int] = {}
    for r, merge in enumerate(model.get("merges", [])):
        left, right = merge.split(" ", 1) if isinstance(merge, str) else merge
        rank.setdefault(left + right, r)
    unk = model.get("unk_token")
    out = []
    for i in range(size):
        if i in added:
            token = added[i]
            kind = CONTROL if token["special"] else USER_DEFINED
            out.append((token["content"], 0.0, UNKNOWN if token["content"] == unk else kind))
            continue
        piece = by_id.get(i, f"<unused_id_{i}>")
        if piece == unk:
            kind = UNKNOWN
        elif len(piece) == 6 and piece.startswith("<0x") and piece.endswith(">"):
            kind = BYTE
        else:
            kind = NORMAL
        out.append((piece, -float(rank[piece]) if piece in rank else 0.0, kind))
    return out


def encode(tokenizer: dict[str, Any]) -> bytes:
    listed = pieces(tokenizer)
    ids = {p: i for i, (p, _, _) in enumerate(listed)}
    body = bytearray()
    for piece, score, kind in listed:
        message = _bytes(1, piece.encode("utf-8")) + _float(2, score) + _varint_field(3, kind)
        body += _bytes(1, message)
    unk = next(i for i, (_, _, kind) in enumerate(listed) if kind == UNKNOWN)
    trainer = (
        _varint_field(3, BPE)
        + _varint_field(35, 1)  # byte_fallback
        + _varint_field(40, unk)
        + _varint_field(41, ids.get("<bos>", -1) & 0xFFFFFFFFFFFFFFFF)
        + _varint_field(42, ids.get("<eos>", -1) & 0xFFFFFFFFFFFFFFFF)
        + _varint_field(43, ids.get("<pad>", -1) & 0xFFFFFFFFFFFFFFFF)
    )
    normalizer = (
        _bytes(1, b"identity")
        + _varint_field(3, 0)  # add_dummy_prefix: the tokenizer.json adds no prefix space
        + _varint_field(4, 0)  # remove_extra_whitespaces
        + _varint_field(5, 1)  # escape_whitespaces
    )
    return bytes(body + _bytes(2, trainer) + _bytes(3, normalizer))


def _varint(value: int) -> bytes:
    out = bytearray()
    while True:
        byte = value & 0x7F
        value >>= 7
        if value:
            out.append(byte | 0x80)
        else:
            out.append(byte)
            return bytes(out)


def _varint_field(number: int, value: int) -> bytes:
    return _varint(number << 3) + _varint(value)


def _bytes(number: int, data: bytes) -> bytes:
    return _varint(number << 3 | 2) + _varint(len(data)) + data


def _float(number: int, value: float) -> bytes:
    return _varint(number << 3 | 5) + struct.pack("<f", value)
