"""Structured decoding from one schema source: the task's `output_schema` (JSON Schema).

The same schema drives both engines, so what the evaluator measures is what serving does:

- transformers (evaluation, CPU serving): `compile_grammar` turns it into an xgrammar grammar
  for the model's tokenizer, and `GrammarLogitsProcessor` masks every token it forbids;
- vLLM / llama.cpp servers: `response_format` is the OpenAI `response_format` body they
  accept, and `VLLM_STRUCTURED_OUTPUTS` the engine setting that makes vLLM's xgrammar backend
  compile it exactly as `compile_grammar` does.

Whitespace is not free: the grammar allows only the compact form (`{"a": 1, "b": 2}`, the
separators json.dumps uses by default). With "any whitespace" a small model can spend its
whole token budget on newlines inside a valid object; vLLM's default allows it, hence
`disable_any_whitespace` below. After the object closes, the grammar admits only the stop
tokens, so decoding ends at EOS rather than at max_new_tokens.

xgrammar and torch are imported inside functions: importing this module costs nothing.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from typing import Any

# json.dumps' default separators, and what xgrammar uses when whitespace is not free.
SEPARATORS = (", ", ": ")

# vLLM engine config (`--structured-outputs-config '{...}'`): the backend that compiles the
# schema like compile_grammar, with the same whitespace rule.
VLLM_STRUCTURED_OUTPUTS = {"backend": "xgrammar", "disable_any_whitespace": True}


def ordered_schema(schema: Mapping[str, Any]) -> dict[str, Any]:
    """The schema with `properties` in the answer's one key order: `required`, then the rest.

    Grammars emit properties in the order the schema lists them, and stored specs are canonical
    JSON with sorted keys: left alone, the grammar would force `category, language, ...` on a
    student trained on `category, priority, ...` (TaskSpec.output_keys is the same order).
    """
    properties = schema.get("properties")
    if not isinstance(properties, Mapping):
        return dict(schema)
    required = [k for k in schema.get("required", []) if k in properties]
    order = required + sorted(k for k in properties if k not in required)
    return {**schema, "properties": {k: properties[k] for k in order}}


def response_format(schema: Mapping[str, Any], name: str = "output") -> dict[str, Any]:
    """The OpenAI chat-completions `response_format` for this schema (vLLM, llama.cpp server)."""
    return {
        "type": "json_schema",
        "json_schema": {"name": name, "schema": ordered_schema(schema), "strict": True},
    }


def tokenizer_info(tokenizer: Any, vocab_size: int, stop_token_ids: Sequence[int] = ()) -> Any:
    """xgrammar's view of a tokenizer. `vocab_size` is the model's logits width (its config),
    which can exceed the tokenizer's own vocabulary; the mask must cover every logit.

    Building it reads the whole vocabulary (~1 s for 49k tokens): do it once per model load.
    """
    import xgrammar as xgr

    stops = list(stop_token_ids) or None  # None: the tokenizer's eos
    return xgr.TokenizerInfo.from_huggingface(
        tokenizer, vocab_size=vocab_size, stop_token_ids=stops
    )


def compile_grammar(schema: Mapping[str, Any], info: Any) -> Any:
    """The schema as a grammar over this tokenizer's tokens (a few ms for a small schema)."""
    import xgrammar as xgr

    compiler = xgr.GrammarCompiler(info)
    return compiler.compile_json_schema(
        json.dumps(ordered_schema(schema)),
        any_whitespace=False,
        separators=SEPARATORS,
        strict_mode=True,
    )


def stop_token_ids(grammar: Any) -> list[int]:
    """The tokens that end a reply once the object is complete; generate must stop on them."""
    return list(grammar.tokenizer_info.stop_token_ids)


class GrammarLogitsProcessor:
    """Masks forbidden tokens for each row of one `generate` call (batched, left-padded).

    One instance per call: matchers hold each row's position in the grammar. Rows are the
    batch's rows in order; left padding does not matter, since only the last token of a row is
    read and it is always the one just generated. A row whose matcher has accepted a stop
    token is left alone: generate pads it from then on and never reads its logits.

    transformers accepts any callable `(input_ids, scores) -> scores` here; the class does not
    subclass its LogitsProcessor so that importing this module stays free of torch.
    """

    def __init__(self, grammar: Any, batch_size: int) -> None:
        import xgrammar as xgr

        self._xgr = xgr
        self.matchers = [xgr.GrammarMatcher(grammar) for _ in range(batch_size)]
        self.vocab_size = grammar.tokenizer_info.vocab_size
        self.bitmask = xgr.allocate_token_bitmask(batch_size, self.vocab_size)
        self.filler = xgr.BatchGrammarMatcher()
        self.started = False

    def __call__(self, input_ids: Any, scores: Any) -> Any:
        if input_ids.shape[0] != len(self.matchers):
            raise RuntimeError(f"batch of {input_ids.shape[0]}, grammar for {len(self.matchers)}")
        if self.started:
            last = input_ids[:, -1].tolist()
            for row, (matcher, token) in enumerate(zip(self.matchers, last, strict=True)):
                if not matcher.is_terminated() and not matcher.accept_token(token):
                    # Only masked tokens can be chosen, so this is a bug, never a model's fault.
                    raise RuntimeError(f"row {row}: token {token} was outside the grammar")
        self.started = True
        active = [i for i, m in enumerate(self.matchers) if not m.is_terminated()]
        if not active:
            return scores
        self.filler.batch_fill_next_token_bitmask(
            [self.matchers[i] for i in active], self.bitmask, active
        )
        self._xgr.apply_token_bitmask_inplace(
            scores, self.bitmask.to(scores.device), vocab_size=self.vocab_size, indices=active
        )
        return scores
