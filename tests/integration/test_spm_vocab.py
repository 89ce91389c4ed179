"""A model whose only tokenizer is a sentencepiece-style tokenizer.json (what transformers makes
of a Gemma GGUF) becomes a GGUF again, and llama.cpp then tokenizes as the tokenizer.json does.

A tiny random Gemma 3 and a hand-built vocabulary: byte fallback, '▁' for spaces, merges whose
order decides the split ("abc" is "a bc" because b+c is merged before a+b, where a tokenizer
that ignored the order would merge the left pair first), and chat tokens.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from quantizer.ml import convert_f16
from quantizer.settings import DEFAULT_CONVERTER
from shared.models import spm

SPECIAL = ["<pad>", "<eos>", "<bos>", "<unk>", "<start_of_turn>", "<end_of_turn>"]
CHARS = list("▁abcdehilnorstuwy")
MERGES = [("b", "c"), ("a", "b"), ("▁", "t"), ("h", "e"), ("▁t", "he"), ("▁", "ab"), ("e", "r")]
TEXTS = [
    "abc",
    "the cab",
    "the other tab bc",
    "héllo wörld ✓ 🚀",  # byte fallback
    "  two  spaces\nand a newline",
    "<start_of_turn>user\nthe abc<end_of_turn>\n",
]


def build(folder: Path) -> Path:
    from tokenizers import Tokenizer, decoders, models, normalizers, pre_tokenizers
    from transformers import Gemma3ForCausalLM, Gemma3TextConfig, PreTrainedTokenizerFast

    vocab = {token: i for i, token in enumerate(SPECIAL)}
    for b in range(256):
        vocab[f"<0x{b:02X}>"] = len(vocab)
    for piece in CHARS + [left + right for left, right in MERGES]:
        vocab.setdefault(piece, len(vocab))
    tok = Tokenizer(
        models.BPE(vocab=vocab, merges=MERGES, unk_token="<unk>", byte_fallback=True, fuse_unk=True)
    )
    tok.normalizer = normalizers.Replace(" ", "▁")
    tok.pre_tokenizer = pre_tokenizers.Split(" ", "merged_with_previous")
    tok.decoder = decoders.Sequence(
        [decoders.Replace("▁", " "), decoders.ByteFallback(), decoders.Fuse()]
    )
    fast = PreTrainedTokenizerFast(
        tokenizer_object=tok,
        bos_token="<bos>",
        eos_token="<eos>",
        unk_token="<unk>",
        pad_token="<pad>",
        additional_special_tokens=SPECIAL[4:],
    )
    fast.save_pretrained(folder)
    config = Gemma3TextConfig(
        vocab_size=len(vocab),
        hidden_size=64,
        intermediate_size=128,
        num_hidden_layers=2,
        num_attention_heads=2,
        num_key_value_heads=1,
        head_dim=32,
        sliding_window=16,
        max_position_embeddings=256,
    )
    Gemma3ForCausalLM(config).save_pretrained(folder, safe_serialization=True)
    return folder


def test_the_written_vocabulary_keeps_every_piece_its_type_and_the_merge_order(tmp_path):
    import json

    import sentencepiece

    folder = build(tmp_path / "model")
    written = spm.ensure(folder)
    assert written == folder / spm.FILE
    assert spm.ensure(folder) is None  # there already: left alone
    processor = sentencepiece.SentencePieceProcessor()
    processor.LoadFromFile(str(written))
    tokenizer = json.loads((folder / "tokenizer.json").read_text())
    assert processor.vocab_size() == len(tokenizer["model"]["vocab"])
    assert processor.IsUnknown(3) and processor.IsControl(2) and processor.IsByte(6)
    assert processor.IdToPiece(4) == "<start_of_turn>" and processor.IsControl(4)
    # b+c was merged before a+b, so "bc" must outscore "ab"
    assert processor.GetScore(processor.PieceToId("bc")) > processor.GetScore(
        processor.PieceToId("ab")
    )


def test_a_gpt2_style_tokenizer_gets_no_sentencepiece_file(tiny_model_dir):
    assert not spm.is_sentencepiece_style(
        __import__("json").loads((tiny_model_dir / "tokenizer.json").read_text())
    )


@pytest.mark.slow
def test_llama_cpp_tokenizes_the_converted_model_as_the_tokenizer_json_does(tmp_path):
    import llama_cpp
    from transformers import AutoTokenizer

    folder = build(tmp_path / "model")
    gguf = convert_f16(DEFAULT_CONVERTER, folder, tmp_path / "model-f16.gguf")
    served = llama_cpp.Llama(model_path=str(gguf), vocab_only=True, verbose=False)
    evaluated = AutoTokenizer.from_pretrained(str(folder))
    for text in TEXTS:
        assert (
            served.tokenize(text.encode(), add_bos=False, special=True)
            == evaluated(text, add_special_tokens=False)["input_ids"]
        ), text
    assert evaluated("abc", add_special_tokens=False).tokens() == ["a", "bc"]
