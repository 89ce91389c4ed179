"""The retrain policy, pure: whether a trigger starts a cycle now, and why not otherwise.

A trigger is a drift alarm, a scheduled period or enough new trusted examples. Whatever the
trigger, at most one cycle per task is in flight, none starts within `cooldown` of the last
one, and at most `max_cycles` start per `budget_window`. Exactly-once for a repeated trigger
(a redelivered alarm) is the repository's unique trigger key; this module decides only
whether a new trigger may start anything.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Literal

Reason = Literal["drift", "schedule", "feedback"]


@dataclass(frozen=True)
class Policy:
    cooldown: timedelta = timedelta(hours=24)
    schedule_every: timedelta | None = timedelta(days=30)
    min_new_examples: int = 200
    max_cycles: int = 4
    budget_window: timedelta = timedelta(days=30)
    # A cycle whose end this service never heard of stops counting as in flight after this.
    max_cycle_age: timedelta = timedelta(days=7)


@dataclass(frozen=True)
class History:
    """A task's cycles as this service recorded them."""

    in_flight: bool
    last_requested_at: datetime | None
    requested_in_window: int  # started within the policy's budget window
    new_trusted_examples: int  # since the last cycle


@dataclass(frozen=True)
class Decision:
    start: bool
    reason: Reason | None
    detail: str


def decide(
    policy: Policy, history: History, now: datetime, *, drift: str | None = None
) -> Decision:
    """`drift`: the alarm's description when one fired; schedule and examples are read from
    the history."""
    if drift is not None:
        reason: Reason | None = "drift"
        detail = drift
    elif history.new_trusted_examples >= policy.min_new_examples:
        reason, detail = "feedback", f"{history.new_trusted_examples} new trusted examples"
    elif policy.schedule_every is not None and (
        history.last_requested_at is None
        or now - history.last_requested_at >= policy.schedule_every
    ):
        reason, detail = "schedule", f"scheduled every {policy.schedule_every}"
    else:
        return Decision(False, None, "no trigger")
    if history.in_flight:
        return Decision(False, reason, f"{detail}; a cycle is already in flight")
    if history.last_requested_at and now - history.last_requested_at < policy.cooldown:
        return Decision(False, reason, f"{detail}; in cooldown ({policy.cooldown})")
    if history.requested_in_window >= policy.max_cycles:
        return Decision(
            False, reason, f"{detail}; budget of {policy.max_cycles} per {policy.budget_window}"
        )
    return Decision(True, reason, detail)


def fits(trigger: Reason, reason: Reason | None) -> bool:
    """Whether a decision made for `reason` may start a cycle on `trigger`'s key. Each trigger
    starts cycles for its own reason only (new examples never spend the schedule's slot), but
    the schedule also takes a round whose examples could not make a dataset (none with a user
    message): decide() names "feedback" first, and nothing else would start it."""
    return reason == trigger or (trigger == "schedule" and reason == "feedback")
