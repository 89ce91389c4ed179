"""What a client's calls cost: one Ledger per client (a job), and process-wide metrics.

Cost is tokens x the spec's per-1k prices, counted only for answers received: a retried
request that failed returned no usage to pay for, and a cache hit was paid for earlier.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

from prometheus_client import Counter

from shared.tasks.spec import Teacher

REQUESTS = Counter(
    "distillery_llm_requests_total", "LLM requests by caller and outcome", ["caller", "outcome"]
)
TOKENS = Counter("distillery_llm_tokens_total", "LLM tokens paid for", ["caller", "kind"])
COST = Counter("distillery_llm_cost_usd_total", "LLM spend at the spec's prices", ["caller"])


def cost_usd(teacher: Teacher, prompt_tokens: int, completion_tokens: int) -> float:
    return (
        prompt_tokens * teacher.price_per_1k_prompt_tokens
        + completion_tokens * teacher.price_per_1k_completion_tokens
    ) / 1000


@dataclass
class Ledger:
    requests: int = 0  # HTTP requests sent, retries included
    retries: int = 0
    cache_hits: int = 0  # answers a caller's cache gave instead of a request
    prompt_tokens: int = 0
    completion_tokens: int = 0
    cost_usd: float = 0.0

    def as_log(self) -> dict[str, Any]:
        """For log lines: the redactor hides any key that mentions a token, so usage is nested."""
        fields = asdict(self)
        usage = {"prompt": fields.pop("prompt_tokens")}
        usage["completion"] = fields.pop("completion_tokens")
        return {**fields, "cost_usd": round(self.cost_usd, 6), "usage": usage}


def outcome(caller: str, name: str) -> None:
    REQUESTS.labels(caller, name).inc()


def paid(ledger: Ledger, caller: str, teacher: Teacher, prompt: int, completion: int) -> None:
    cost = cost_usd(teacher, prompt, completion)
    ledger.prompt_tokens += prompt
    ledger.completion_tokens += completion
    ledger.cost_usd += cost
    TOKENS.labels(caller, "prompt").inc(prompt)
    TOKENS.labels(caller, "completion").inc(completion)
    COST.labels(caller).inc(cost)
