"""The rollout state machine: samples first, then the stated rule, one step at a time."""

from __future__ import annotations

import pytest

from deployer.rollout import (
    ArmStats,
    Policy,
    Rollout,
    decide,
    guards,
    pause,
    promote,
    rollback,
    wilson,
    z_worse,
)

POLICY = Policy(ab_shares=(0.1, 0.5), shadow_samples=200, ab_samples=500, p95_budget_ms=None)


def healthy(n: int, **overrides) -> ArmStats:
    """n requests at the live model's usual figures: 1 % errors, 5 % negative feedback."""
    values = dict(
        requests=n, errors=n // 100, rated=n // 2, negative=n // 40, structured=n,
        schema_invalid=0, p95_ms=100.0, compared=n, agreed=int(n * 0.95),
    )  # fmt: skip
    return ArmStats(**{**values, **overrides})


def test_nothing_is_decided_before_both_arms_have_enough_samples():
    start = Rollout()
    awful = healthy(199, errors=199)
    decision = decide(start, awful, healthy(5000), POLICY)
    assert decision.action == "wait" and decision.rollout == start
    assert "199 candidate" in decision.reasons[0]
    assert decide(start, healthy(5000), healthy(150), POLICY).action == "wait"


def test_a_good_candidate_walks_every_step_to_full():
    rollout, shares = Rollout(), []
    for _ in range(3):
        decision = decide(rollout, healthy(1000), healthy(1000), POLICY)
        assert decision.action == "promote"
        rollout = decision.rollout
        shares.append((rollout.stage, rollout.share(POLICY)))
    assert shares == [("ab", 0.1), ("ab", 0.5), ("full", 1.0)]
    assert decide(rollout, healthy(1000), healthy(1000), POLICY).action == "wait"


def test_a_worse_error_rate_rolls_back_with_the_reason():
    decision = decide(Rollout("ab", 1), healthy(1000, errors=60), healthy(1000), POLICY)
    assert decision.action == "rollback"
    assert decision.rollout.stage == "rolled_back"
    assert "error rate 60/1000 vs live 10/1000" in decision.rollout.reason
    assert decision.rollout.share(POLICY) == 0.0


def test_a_difference_within_the_margin_or_the_noise_is_not_worse():
    # 1.5 % vs 1 % on 1000 each: inside the one-point margin.
    assert not guards("ab", healthy(1000, errors=15), healthy(1000), POLICY)
    # 4 % vs 1 % on 100 each: a big gap on few samples is not significant at alpha 0.01.
    assert z_worse(4, 100, 1, 100, 0.01) < 2.326


@pytest.mark.parametrize(
    ("candidate", "expected"),
    [
        (dict(negative=120), "negative-feedback rate"),
        (dict(schema_invalid=50), "schema-invalid rate"),
        (dict(p95_ms=400.0), "P95 400 ms is over 150 ms"),
        (dict(agreed=600), "agreement with the live model 600/1000"),
    ],
)
def test_each_guard_trips_on_its_own(candidate, expected):
    worse = guards("shadow", healthy(1000, **candidate), healthy(1000), POLICY)
    assert len(worse) == 1 and expected in worse[0]


def test_the_task_budget_and_absolute_error_cap():
    budget = Policy(p95_budget_ms=2000.0, max_error_rate=0.02)
    # Slower than live by far, still within the task's own P95 budget: not worse.
    assert not guards("ab", healthy(1000, p95_ms=1500.0), healthy(1000), budget)
    # Live is just as bad, but 5 % errors is certainly above the task's 2 % cap.
    both_bad = guards("ab", healthy(1000, errors=50), healthy(1000, errors=50), budget)
    assert len(both_bad) == 1 and "above the task's 2.0%" in both_bad[0]


def test_agreement_counts_only_in_shadow():
    assert not guards("ab", healthy(1000, agreed=100), healthy(1000), POLICY)


def test_wilson_bounds():
    low, high = wilson(50, 1000)
    assert low < 0.05 < high and high - low < 0.05
    assert wilson(0, 0) == (0.0, 1.0)


def test_pause_holds_and_operators_can_still_act():
    paused = pause(Rollout("ab", 0), True, "paused by an operator")
    assert decide(paused, healthy(1000, errors=500), healthy(1000), POLICY).action == "wait"
    assert promote(paused, POLICY, "by hand").rollout.stage == "ab"
    assert promote(paused, POLICY, "by hand").rollout.step == 1
    assert rollback(paused, "by hand").rollout.stage == "rolled_back"
    with pytest.raises(ValueError, match="cannot be promoted"):
        promote(Rollout("full"), POLICY, "again")
    with pytest.raises(ValueError, match="cannot be rolled back"):
        rollback(Rollout("rolled_back"), "again")
