"""A student imported from a GGUF must be able to chat: a pretrained model without a chat
template gets Gemma's when its vocabulary has the turn tokens, and stops at <end_of_turn>;
one with neither is refused with the reason, never stored half-usable."""

from __future__ import annotations

from types import SimpleNamespace

import pytest
from tokenizers import Tokenizer
from tokenizers.models import WordLevel
from tokenizers.pre_tokenizers import WhitespaceSplit
from transformers import GenerationConfig, PreTrainedTokenizerFast

from shared.models import ModelFormatError
from shared.models.importer import GEMMA_TEMPLATE, PACKAGED, _chat_ready, packaged_gguf

WORDS = ["<pad>", "<eos>", "<bos>", "<unk>", "hello", "triage", "{}"]


def tokenizer(*extra: str, template: str | None = None) -> PreTrainedTokenizerFast:
    vocab = {w: i for i, w in enumerate([*WORDS, *extra])}
    core = Tokenizer(WordLevel(vocab, unk_token="<unk>"))
    core.pre_tokenizer = WhitespaceSplit()
    tok = PreTrainedTokenizerFast(
        tokenizer_object=core, bos_token="<bos>", eos_token="<eos>", pad_token="<pad>"
    )
    tok.chat_template = template
    return tok


def model(eos: int | list[int]) -> SimpleNamespace:
    return SimpleNamespace(generation_config=GenerationConfig(eos_token_id=eos))


def test_a_pretrained_gemma_gets_gemmas_turns_and_stops_at_the_end_of_its_turn():
    tok = tokenizer("<start_of_turn>", "<end_of_turn>")
    m = model(1)
    _chat_ready(tok, m, SimpleNamespace(name="gemma.gguf"))
    assert tok.chat_template == GEMMA_TEMPLATE
    chat = [
        {"role": "system", "content": "Triage."},
        {"role": "user", "content": "hello"},
        {"role": "assistant", "content": "{}"},
    ]
    assert tok.apply_chat_template(chat, tokenize=False) == (
        "<bos><start_of_turn>user\nTriage.\n\nhello<end_of_turn>\n"
        "<start_of_turn>model\n{}<end_of_turn>\n"
    )
    # The prompt the evaluator and server render ends where the model's answer begins.
    assert tok.apply_chat_template(chat[:2], tokenize=False, add_generation_prompt=True).endswith(
        "hello<end_of_turn>\n<start_of_turn>model\n"
    )
    assert m.generation_config.eos_token_id == [1, len(WORDS) + 1]


def test_a_model_with_its_own_template_keeps_it():
    tok = tokenizer("<start_of_turn>", "<end_of_turn>", template="{{ messages }}")
    m = model([1])
    _chat_ready(tok, m, SimpleNamespace(name="x.gguf"))
    assert tok.chat_template == "{{ messages }}" and m.generation_config.eos_token_id == [1]


def test_no_template_and_no_turn_tokens_is_refused():
    with pytest.raises(ModelFormatError, match="no chat template"):
        _chat_ready(tokenizer(), model(1), SimpleNamespace(name="base.gguf"))


def test_an_unknown_packaged_name_lists_the_packaged_ones(tmp_path):
    with pytest.raises(ModelFormatError, match="gemma-3-270m") as caught:
        packaged_gguf("llama-70b", tmp_path)
    assert all(name in str(caught.value) for name in PACKAGED)
