"""The task's schema as llama.cpp GBNF (shared.models.gbnf): the rewrite rules, and that
llama.cpp's own parser takes the result for schemas of every JSON type.

That served replies equal measured ones on a real model is in
tests/integration/test_deployer_llamacpp.py.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from shared.models.gbnf import GbnfError, schema_gbnf, to_gbnf

ROOT = Path(__file__).resolve().parents[2]

RICH = {
    "type": "object",
    "properties": {
        "summary": {"type": "string", "maxLength": 40},
        "score": {"type": "integer", "minimum": 0, "maximum": 10},
        "ratio": {"type": "number"},
        "tags": {"type": "array", "items": {"enum": ["a_b", "c(d)", 'q"uote']}, "maxItems": 3},
        "note": {"type": ["string", "null"]},
        "city": {"enum": ["Zürich", "東京"]},
        "nested": {"type": "object", "properties": {"ok": {"type": "boolean"}}},
    },
    "required": ["summary", "score", "tags"],
    "additionalProperties": False,
}


def test_rewrites_lookaheads_repeats_nul_and_names():
    ebnf = (
        'root ::= (("{" a_b{0, -1} "}" x{2, 5} y{3})) (=([ \\n]* [,}\\]:] "(=)"))\n'
        'a_b ::= [^\\0-\\x1f\\"\\\\] "\\\\0"'
    )
    assert to_gbnf(ebnf) == (
        'root ::= (("{" a-b{0,} "}" x{2,5} y{3})) \n'
        'a-b ::= [^\\x00-\\x1f\\"\\\\] "\\\\0"'  # an escaped backslash before 0 stays
    )


def test_unknown_constructs_are_refused_not_sent():
    with pytest.raises(GbnfError, match="no GBNF form"):
        to_gbnf('root ::= TagDispatch(("<", a))  # <x>')
    with pytest.raises(GbnfError, match="repetition"):
        to_gbnf('root ::= "a"{x, y}')
    with pytest.raises(GbnfError, match="unterminated"):
        to_gbnf('root ::= "a')


# llama.cpp parses a grammar only against a vocabulary (its sampler's init returns NULL on a
# grammar it refuses, and a NULL sampler takes the process down): load one, in a child.
_PARSE = """
import sys
import llama_cpp
from shared.models.importer import smollm2_gguf
llm = llama_cpp.Llama(str(smollm2_gguf()), vocab_only=True, verbose=False)
made = llama_cpp.llama_sampler_init_grammar(llm._model.vocab, sys.stdin.read().encode(), b"root")
sys.exit(0 if made else 3)
"""


def _llama_parses(grammar: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-c", _PARSE],
        input=grammar,
        text=True,
        capture_output=True,
        timeout=120,
        cwd=ROOT,
    )


@pytest.mark.parametrize("name", ["ticket-triage", "rich"])
def test_llama_cpp_parses_the_grammar(name):
    pytest.importorskip("llama_cpp", reason="llama-cpp-python is the cpu extra")
    if name == "rich":
        schema = RICH
    else:
        schema = json.loads((ROOT / "tasks" / name / "schema.json").read_text())
    grammar = schema_gbnf(schema)
    assert grammar.startswith("root ::=") or "\nroot ::=" in grammar
    assert "(=" not in grammar and "_" not in grammar.split("::=")[0]
    done = _llama_parses(grammar)
    assert done.returncode == 0, done.stderr[-2000:]
    # The check can fail: a grammar llama.cpp cannot read is reported as such.
    assert _llama_parses("root ::= (").returncode == 3
