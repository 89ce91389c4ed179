"""A stand-in teacher for the offline demo: an OpenAI-compatible server that KNOWS the answers.

This machine has no GPT-4-class model and no network, so `distillery demo` cannot ask a real
teacher. This server plays one for this task only, and says so in every response's `model`
field. It is not a model and infers nothing:
- asked to *write an input* (a prompt with a "Use case: <name>" line, "Kind: negative" for a
  negative), it returns the next ticket of that kind from the pack's synthetic split;
- asked the production question (system = the task's instructions, user = a ticket), it looks
  the ticket up among the tickets it knows (synthetic split and golden set), whose labels are
  correct by construction, and answers with the label; a ticket it never saw gets the task's
  refusal ({"category": "unknown", ..., "needs_human": true}).
A real deployment points `teacher.base_url` at any OpenAI-compatible endpoint instead.

Run: python tasks/ticket-triage/teacher.py --port 8765
"""

import argparse
import importlib.util
import json
import re
import time
from collections import Counter
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
_USE_CASE = re.compile(r"^Use case: ([a-z0-9_-]+)", re.MULTILINE)
_NEGATIVE = re.compile(r"^Kind: negative", re.MULTILINE)
MODEL = "stand-in-teacher (scripted answers from the task pack; not a model)"


def _generator():
    spec = importlib.util.spec_from_file_location("ticket_triage_generate", HERE / "generate.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def synthetic_rows(n: int = 2000, seed: int = 7) -> list[dict[str, Any]]:
    # The synthetic split shares no sentence with the golden set, so curation keeps it.
    return _generator().make_examples(n, seed, split="synthetic")


def golden_rows() -> list[dict[str, Any]]:
    lines = (HERE / "golden.jsonl").read_text(encoding="utf-8").splitlines()
    return [json.loads(line) for line in lines if line.strip()]


class StandInTeacher:
    def __init__(self, pool: list[dict[str, Any]], known: list[dict[str, Any]]) -> None:
        self.pool = pool
        self.answers = {r["input"].strip(): r["output"] for r in [*known, *pool]}
        self.refusal = json.dumps(
            {
                "category": "unknown",
                "priority": "low",
                "product": "none",
                "needs_human": True,
                "language": "en",
            }
        )
        self._cursor: Counter[tuple[str | None, bool]] = Counter()

    def reply(self, messages: list[dict[str, str]]) -> str:
        user = next((m["content"] for m in messages if m["role"] == "user"), "")
        use_case = _USE_CASE.search(user)
        if use_case and "Write one new input" in user:
            return self._next_input(use_case.group(1), bool(_NEGATIVE.search(user)))
        return self.answers.get(user.strip(), self.refusal)

    def _next_input(self, use_case: str, negative: bool) -> str:
        rows = [r for r in self.pool if r["negative"] == negative and r["use_case"] == use_case]
        rows = rows or [r for r in self.pool if r["negative"] == negative]
        key = (use_case, negative)
        row = rows[self._cursor[key] % len(rows)]
        self._cursor[key] += 1
        return row["input"]


def create_app(teacher: StandInTeacher):
    from fastapi import FastAPI, Request

    app = FastAPI(title="stand-in teacher")

    @app.get("/v1/models")
    async def models() -> dict[str, Any]:
        return {"object": "list", "data": [{"id": MODEL, "object": "model"}]}

    @app.get("/health")
    async def health() -> dict[str, str]:
        return {"status": "ok"}

    @app.post("/v1/chat/completions")
    async def chat(request: Request) -> dict[str, Any]:
        body = await request.json()
        text = teacher.reply(body["messages"])
        prompt = sum(len(str(m.get("content", "")).split()) for m in body["messages"])
        completion = max(1, len(text.split()))
        return {
            "id": f"chatcmpl-standin-{time.monotonic_ns()}",
            "object": "chat.completion",
            "created": int(time.time()),
            "model": MODEL,
            "choices": [
                {
                    "index": 0,
                    "message": {"role": "assistant", "content": text},
                    "finish_reason": "stop",
                }
            ],
            # Words, not tokens: the server has no tokenizer; the cost ledger says "about".
            "usage": {
                "prompt_tokens": prompt,
                "completion_tokens": completion,
                "total_tokens": prompt + completion,
            },
        }

    return app


def main() -> None:
    import uvicorn

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8765)
    args = parser.parse_args()
    teacher = StandInTeacher(synthetic_rows(), golden_rows())
    uvicorn.run(create_app(teacher), host=args.host, port=args.port, log_level="warning")


if __name__ == "__main__":
    main()
