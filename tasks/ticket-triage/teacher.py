"""A stand-in teacher for the offline demo: an OpenAI-compatible server that KNOWS the answers.

This machine has no GPT-4-class model and no network, so `distillery demo` cannot ask a real
teacher. This server plays one for this task only, and says so in every response's `model`
field. It is not a model and infers nothing:
- asked to *write an input* (a prompt with a "Use case: <name>" line, "Kind: negative" for a
  negative), it returns the next ticket of that kind from the pack's synthetic split;
- asked the production question (system = the task's instructions, user = a ticket), it looks
  the ticket up among the tickets it knows (synthetic split, golden set, the demo's
  production tickets and its drift phase's payroll tickets), whose labels are correct by
  construction, and answers with the label;
  a ticket it never saw gets the task's refusal ({"category": "unknown", ..., "needs_human": true}).
A real deployment points `teacher.base_url` at any OpenAI-compatible endpoint instead.

Its latency is simulated, so that a student's latency is compared with something like a real
teacher's rather than with a dictionary lookup (which would fail any student on latency and
flatter nothing). The model is GPT-4o on OpenAI's API, from Artificial Analysis' published
medians for it (May 2024 version): 0.39 s to the first token and 81 output tokens/s. Each
answer waits a time to first token drawn log-normal around that median (sigma 0.35: P95 about
1.8x the median) plus its completion tokens at that rate. The task spec's prices are GPT-4o's
list prices ($2.50 / $10 per million prompt / completion tokens). Both are simulated, never
measured: every response says so in its `x-simulated-latency-ms` header, and `--ttft-ms`,
`--tokens-per-s` and `--no-latency` change or remove the model.

Run: python tasks/ticket-triage/teacher.py --port 8765
"""

import argparse
import asyncio
import importlib.util
import json
import math
import random
import re
import time
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
_USE_CASE = re.compile(r"^Use case: ([a-z0-9_-]+)", re.MULTILINE)
_NEGATIVE = re.compile(r"^Kind: negative", re.MULTILINE)
PRODUCTION_SEED = 20261202
MODEL = "stand-in-teacher (scripted answers from the task pack; not a model)"


@dataclass
class SimulatedLatency:
    """GPT-4o on OpenAI's API as Artificial Analysis published it (see the module docstring)."""

    ttft_ms: float = 390.0
    tokens_per_s: float = 81.0
    sigma: float = 0.35
    seed: int = 0

    def __post_init__(self) -> None:
        self._rng = random.Random(self.seed)  # noqa: S311 - a simulation, not a secret

    def seconds(self, completion_tokens: int) -> float:
        ttft = self.ttft_ms / 1000 * math.exp(self._rng.gauss(0.0, self.sigma))
        return ttft + completion_tokens / self.tokens_per_s


def _pack_module(name: str):
    """A script of this pack (not a package), loaded by path."""
    spec = importlib.util.spec_from_file_location(f"ticket_triage_{name}", HERE / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _generator():
    return _pack_module("generate")


def synthetic_rows(n: int = 2000, seed: int = 7) -> list[dict[str, Any]]:
    # The synthetic split shares no sentence with the golden set, so curation keeps it.
    return _generator().make_examples(n, seed, split="synthetic")


PRODUCTION_ROWS = 400


def production_rows(n: int = PRODUCTION_ROWS) -> list[dict[str, Any]]:
    """The first n of the demo's production traffic (shared/cli/traffic.py): golden-split
    words, so no training ticket shares a sentence with them, drawn with their own seed, golden
    rows left out. The student meets them first in production, as it would meet real traffic.
    Always cut from one pool of PRODUCTION_ROWS: a draw's rows depend on how many it makes."""
    if not 0 <= n <= PRODUCTION_ROWS:
        raise ValueError(f"n must be 0 to {PRODUCTION_ROWS}, not {n}")
    golden = {r["input"] for r in golden_rows()}
    made = _generator().make_examples(PRODUCTION_ROWS + len(golden), PRODUCTION_SEED)
    return [r for r in made if r["input"] not in golden][:n]


def payroll_rows(n: int = 240) -> list[dict[str, Any]]:
    """The drift phase's new kind of ticket (payroll.py): a product line the task predates."""
    return _pack_module("payroll").rows(n)


def known_rows() -> list[dict[str, Any]]:
    """What the stand-in teacher answers besides its synthetic pool."""
    return [*golden_rows(), *production_rows(), *payroll_rows()]


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


def create_app(teacher: StandInTeacher, latency: SimulatedLatency | None = None):
    from fastapi import FastAPI, Request, Response

    app = FastAPI(title="stand-in teacher")

    @app.get("/v1/models")
    async def models() -> dict[str, Any]:
        return {"object": "list", "data": [{"id": MODEL, "object": "model"}]}

    @app.get("/health")
    async def health() -> dict[str, str]:
        return {"status": "ok"}

    @app.post("/v1/chat/completions")
    async def chat(request: Request, response: Response) -> dict[str, Any]:
        body = await request.json()
        text = teacher.reply(body["messages"])
        prompt = sum(len(str(m.get("content", "")).split()) for m in body["messages"])
        completion = max(1, len(text.split()))
        if latency is not None:
            wait = latency.seconds(completion)
            response.headers["x-simulated-latency-ms"] = f"{wait * 1000:.0f}"
            await asyncio.sleep(wait)
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
    parser.add_argument("--ttft-ms", type=float, default=SimulatedLatency.ttft_ms)
    parser.add_argument("--tokens-per-s", type=float, default=SimulatedLatency.tokens_per_s)
    parser.add_argument("--no-latency", action="store_true", help="answer at once")
    args = parser.parse_args()
    if args.tokens_per_s <= 0 or args.ttft_ms < 0:
        parser.error("--tokens-per-s must be above 0 and --ttft-ms not below 0")
    teacher = StandInTeacher(synthetic_rows(), known_rows())
    latency = None if args.no_latency else SimulatedLatency(args.ttft_ms, args.tokens_per_s)
    app = create_app(teacher, latency)
    uvicorn.run(app, host=args.host, port=args.port, log_level="warning")


if __name__ == "__main__":
    main()
