"""The small value types events are built from, and the bus identities that produce them.

Declared here so the catalog module stays a list of events; import them from either.
"""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from .base import MAX_COUNT, Frozen, Name

CycleReason = Literal["manual", "schedule", "drift", "feedback"]
QuantFormat = Literal["int8", "int4", "fp8", "gguf"]
RolloutStage = Literal["shadow", "ab", "full", "rolled_back"]

# Who may publish each event and who consumes it, by bus identity: a service's NAME, "ops" for
# the CLI, "ingest" for outside apps. shared/bus/auth.py turns these into NATS permissions,
# so a producer missing here is refused by the server, not by a code review.
Who = frozenset[str]
NOBODY: Who = frozenset()
OPS: Who = frozenset({"ops"})
INGEST: Who = frozenset({"ingest"})
# The services whose stages can end a cycle (CycleFailed.stage names their stage).
STAGES: Who = frozenset({"synth-data", "curation", "trainer", "evaluator", "quantizer", "deployer"})
SERVICES: Who = STAGES | {"feedback-collector"}
IDENTITIES: Who = SERVICES | OPS | INGEST
# NATS key-value buckets (state beside the event stream) and the identities that use each:
# the deployer's control plane writes each task's route, its gateways watch them; the gateways
# share each API key's per-minute request count.
ROUTES_BUCKET = "deployer-routes"
RATES_BUCKET = "gateway-rates"
KV_BUCKETS: dict[str, Who] = {
    ROUTES_BUCKET: frozenset({"deployer"}),
    RATES_BUCKET: frozenset({"deployer"}),
}


class Confusion(Frozen):
    """One way the student gets a field wrong: labels only, never an input text."""

    field: Name
    expected: str = Field(max_length=256)
    got: str = Field(max_length=256, description="'<invalid>' when the reply did not parse")
    count: int = Field(ge=1, le=MAX_COUNT)


class GateResult(Frozen):
    name: Name
    passed: bool
    value: float | None
    threshold: float | None
    reason: str | None = Field(
        default=None,
        description="why, when the numbers alone do not say: 'not measured: ...', "
        "'teacher too weak for this task'",
    )


class ChatMessage(Frozen):
    role: Literal["system", "user", "assistant", "tool"]
    content: str
