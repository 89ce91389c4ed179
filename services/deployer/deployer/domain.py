"""Routing decisions, pure: which model answers a request, and which one only shadows it.

A task's route has a live model and, during a rollout, a candidate:

- no candidate, or stage "full" / "rolled_back": the live model answers everything;
- "shadow": the live model answers; the candidate gets a mirrored copy whose answer is
  recorded and never returned;
- "ab": a stable hash of (task, sticky id) puts a caller on the candidate when it falls below
  the candidate's share, so one key (or user) always sees the same arm while the share holds,
  and raising the share only moves callers onto the candidate, never back.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import Literal
from uuid import UUID

from shared.tasks.spec import TaskSpec

Kind = Literal["student", "teacher"]
# How the server speaks structured output: the OpenAI `json_schema` response_format (vLLM,
# OpenAI, transformers serve), or a GBNF `grammar` (llama-cpp-python; prompts.decoding).
Engine = Literal["openai", "vllm", "llama.cpp"]
Stage = Literal["shadow", "ab", "full", "rolled_back"]


@dataclass(frozen=True)
class Backend:
    """One served model a route can send a request to."""

    kind: Kind
    base_url: str  # OpenAI-compatible, ending in /v1
    model: str  # the name the server answers to (a served adapter's name on vLLM)
    version: str  # what is served: the artifact's sha256, or the teacher's model name
    deployment_id: UUID | None = None
    api_key_env: str | None = None  # the variable holding the upstream's key (the teacher's)
    engine: Engine = "openai"


@dataclass(frozen=True)
class Route:
    task: str
    spec: TaskSpec
    live: Backend
    candidate: Backend | None = None
    stage: Stage | None = None
    share: float = 0.0  # the candidate's share of callers in "ab"


@dataclass(frozen=True)
class Choice:
    serve: Backend
    arm: Literal["live", "candidate"]
    shadow: Backend | None = None  # mirrored, answer recorded, never returned


def bucket(task: str, sticky_id: str) -> float:
    """A caller's fixed place in [0, 1) for a task: the same on every replica and restart."""
    raw = hashlib.sha256(f"{task}\x00{sticky_id}".encode()).digest()
    return int.from_bytes(raw[:8], "big") / 2**64


def choose(route: Route, sticky_id: str) -> Choice:
    candidate = route.candidate
    if candidate is None or route.stage in (None, "rolled_back"):
        return Choice(route.live, "live")
    if route.stage == "full":
        return Choice(candidate, "candidate")
    if route.stage == "shadow":
        return Choice(route.live, "live", shadow=candidate)
    if bucket(route.task, sticky_id) < route.share:
        return Choice(candidate, "candidate")
    return Choice(route.live, "live")
