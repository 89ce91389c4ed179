"""The rollout state machine, pure: shadow -> A/B (weighted steps) -> full, or rolled back.

    shadow --(enough samples, no guard tripped)--> ab[0] --> ab[1] --> ... --> full
       \\___________________ any guard tripped _______________________/--> rolled_back

A step is judged on the candidate's own numbers next to the live model's over the same window
(`ArmStats`, from the feedback-collector's online metrics). Nothing is decided before both
arms have `min_samples` requests in the window; then, the stated rule:

- error rate, negative-feedback rate, schema-invalid rate: the candidate is worse when a
  one-sided two-proportion z-test rejects "candidate <= live + margin" at alpha = 0.01
  (z > 2.326); the margin (default 1 point) keeps a meaningless difference from rolling back
  a good model once samples are large. The error rate must also stay under the task's
  absolute `rollout.max_error_rate` by its Wilson 99 % lower bound (certainly above: worse).
- P95 latency: worse when above the task's P95 budget (thresholds.p95_latency_ms), or, with
  no budget, above the live model's P95 times `max_latency_ratio`.
- agreement with the live model (shadow only): worse when the Wilson 99 % upper bound of the
  agreement rate is under `min_agreement`: certainly less agreeing than required.

Worse on any: roll back, with every reason. Otherwise promote to the next step. A paused
rollout holds its step; operators may promote or roll back by hand (forced, with a reason).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace
from typing import Literal

Stage = Literal["shadow", "ab", "full", "rolled_back"]
Z_99 = 2.326  # one-sided alpha = 0.01


@dataclass(frozen=True)
class ArmStats:
    """One arm's online metrics over the current step's window."""

    requests: int = 0
    errors: int = 0
    rated: int = 0  # requests with feedback
    negative: int = 0
    structured: int = 0  # replies that had to match the schema
    schema_invalid: int = 0
    p95_ms: float | None = None
    compared: int = 0  # shadow: replies compared with the live model's
    agreed: int = 0


@dataclass(frozen=True)
class Policy:
    ab_shares: tuple[float, ...] = (0.1, 0.5)
    shadow_samples: int = 200
    ab_samples: int = 500
    max_error_rate: float = 0.02
    margin: float = 0.01
    p95_budget_ms: float | None = None
    max_latency_ratio: float = 1.5
    min_agreement: float = 0.8


@dataclass(frozen=True)
class Rollout:
    stage: Stage = "shadow"
    step: int = 0  # index into ab_shares while in "ab"
    paused: bool = False
    reason: str = "candidate passed its evaluation"

    def share(self, policy: Policy) -> float:
        """The candidate's share of callers (shadow copies are not a share: it answers none)."""
        if self.stage == "ab":
            return policy.ab_shares[self.step]
        return 1.0 if self.stage == "full" else 0.0

    @property
    def finished(self) -> bool:
        return self.stage in ("full", "rolled_back")


@dataclass(frozen=True)
class Decision:
    action: Literal["wait", "promote", "rollback"]
    reasons: tuple[str, ...]
    rollout: Rollout  # the state after the decision (unchanged when waiting)


def z_worse(bad_c: int, n_c: int, bad_l: int, n_l: int, margin: float) -> float:
    """z of "candidate's rate exceeds live's by more than margin" (unpooled standard error)."""
    if n_c == 0 or n_l == 0:
        return 0.0
    p_c, p_l = bad_c / n_c, bad_l / n_l
    se = math.sqrt(p_c * (1 - p_c) / n_c + p_l * (1 - p_l) / n_l)
    # No variance at all (0 of n against 0 of n, say): only a difference beyond margin counts.
    if se == 0:
        return math.inf if p_c - p_l > margin else 0.0
    return (p_c - p_l - margin) / se


def wilson(successes: int, n: int, z: float = Z_99) -> tuple[float, float]:
    if n == 0:
        return 0.0, 1.0
    p = successes / n
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / (1 + z * z / n)
    return max(0.0, centre - half), min(1.0, centre + half)


def guards(stage: Stage, candidate: ArmStats, live: ArmStats, policy: Policy) -> list[str]:
    """Every way the candidate is worse under the rule above; empty when it is not."""
    worse: list[str] = []
    rates = [
        ("error rate", candidate.errors, candidate.requests, live.errors, live.requests),
        ("negative-feedback rate", candidate.negative, candidate.rated, live.negative, live.rated),
        (
            "schema-invalid rate",
            candidate.schema_invalid,
            candidate.structured,
            live.schema_invalid,
            live.structured,
        ),
    ]
    for name, bad_c, n_c, bad_l, n_l in rates:
        z = z_worse(bad_c, n_c, bad_l, n_l, policy.margin)
        if z > Z_99:
            worse.append(
                f"{name} {bad_c}/{n_c} vs live {bad_l}/{n_l}: worse by more than "
                f"{policy.margin:.0%} (z={z:.2f} > {Z_99})"
            )
    low, _ = wilson(candidate.errors, candidate.requests)
    if low > policy.max_error_rate:
        worse.append(
            f"error rate {candidate.errors}/{candidate.requests} is above the task's "
            f"{policy.max_error_rate:.1%} (99% lower bound {low:.3f})"
        )
    if candidate.p95_ms is not None:
        limit = policy.p95_budget_ms
        if limit is None and live.p95_ms is not None:
            limit = live.p95_ms * policy.max_latency_ratio
        if limit is not None and candidate.p95_ms > limit:
            worse.append(f"P95 {candidate.p95_ms:.0f} ms is over {limit:.0f} ms")
    if stage == "shadow" and candidate.compared:
        _, high = wilson(candidate.agreed, candidate.compared)
        if high < policy.min_agreement:
            worse.append(
                f"agreement with the live model {candidate.agreed}/{candidate.compared} is "
                f"below {policy.min_agreement:.0%} (99% upper bound {high:.3f})"
            )
    return worse


def decide(rollout: Rollout, candidate: ArmStats, live: ArmStats, policy: Policy) -> Decision:
    """The automatic step: wait for samples, then promote or roll back (see the module doc)."""
    if rollout.finished or rollout.paused:
        return Decision("wait", ("finished" if rollout.finished else "paused",), rollout)
    needed = policy.shadow_samples if rollout.stage == "shadow" else policy.ab_samples
    if min(candidate.requests, live.requests) < needed:
        have = f"{candidate.requests} candidate / {live.requests} live"
        return Decision("wait", (f"{have} requests of {needed} needed",), rollout)
    worse = guards(rollout.stage, candidate, live, policy)
    if worse:
        return rollback(rollout, "; ".join(worse))
    return promote(rollout, policy, f"{rollout.stage} held over {candidate.requests} requests")


def promote(rollout: Rollout, policy: Policy, reason: str) -> Decision:
    if rollout.finished:
        raise ValueError(f"a rollout that is {rollout.stage} cannot be promoted")
    if rollout.stage == "shadow":
        after = Rollout("ab", 0, rollout.paused, reason)
    elif rollout.step + 1 < len(policy.ab_shares):
        after = Rollout("ab", rollout.step + 1, rollout.paused, reason)
    else:
        after = Rollout("full", 0, rollout.paused, reason)
    return Decision("promote", (reason,), after)


def rollback(rollout: Rollout, reason: str) -> Decision:
    if rollout.finished:
        raise ValueError(f"a rollout that is {rollout.stage} cannot be rolled back")
    return Decision("rollback", (reason,), Rollout("rolled_back", 0, rollout.paused, reason))


def pause(rollout: Rollout, paused: bool, reason: str) -> Rollout:
    return replace(rollout, paused=paused, reason=reason)
