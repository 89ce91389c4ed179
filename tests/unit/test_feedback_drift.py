"""Drift tests on seeded synthetic data: MMD with a permutation threshold, Bernoulli CUSUM."""

from __future__ import annotations

import numpy as np
import pytest

from feedback_collector.drift import Cusum, mmd_test, slice_mix_shift


def test_mmd_flags_a_shifted_window_and_not_a_stationary_one():
    rng = np.random.default_rng(7)
    reference = rng.normal(size=(100, 16))
    same = rng.normal(size=(100, 16))
    shifted = rng.normal(size=(100, 16)) + np.r_[np.full(4, 0.8), np.zeros(12)]
    assert not mmd_test(reference, same, alpha=0.01).drifted
    result = mmd_test(reference, shifted, alpha=0.01)
    assert result.drifted and result.p_value <= 0.01 and result.statistic > result.threshold


def test_mmd_false_alarm_rate_stays_near_alpha():
    rng = np.random.default_rng(11)
    alarms = sum(
        mmd_test(rng.normal(size=(40, 8)), rng.normal(size=(40, 8)), alpha=0.05, seed=i).drifted
        for i in range(60)
    )
    assert alarms <= 9  # 5 % of 60 is 3; a binomial tail well past it would mean a bias


def test_cusum_alarms_after_a_rate_shift_and_not_before():
    rng = np.random.default_rng(3)
    cusum = Cusum(baseline=0.05, shifted=0.15, threshold=Cusum.threshold_for(10_000))
    assert not any(cusum.update(bool(x)) for x in rng.random(3000) < 0.05)
    cusum.reset()
    fired = next(i for i, x in enumerate(rng.random(3000) < 0.20) if cusum.update(bool(x)))
    assert fired < 500


def test_cusum_rejects_a_shift_below_the_baseline():
    with pytest.raises(ValueError):
        Cusum(baseline=0.2, shifted=0.1, threshold=5)


def test_slice_mix_shift():
    assert slice_mix_shift({"a": 5, "b": 5}, {"a": 1, "b": 1}) == 0
    assert slice_mix_shift({"a": 1}, {"b": 3}) == 1


def test_the_permutations_scored_at_once_equal_the_loop_over_them():
    from feedback_collector.drift import _mmd2_from_kernel, _mmd2_of_labels, _sq_dists

    rng = np.random.default_rng(5)
    pooled = rng.normal(size=(50, 8))
    k = np.exp(-_sq_dists(pooled, pooled) / 8.0)
    perms = [rng.permutation(50) for _ in range(20)]
    sides = np.zeros((20, 50))
    for i, p in enumerate(perms):
        sides[i, p[:30]] = 1.0
    looped = [_mmd2_from_kernel(k, p[:30], p[30:]) for p in perms]
    assert np.allclose(_mmd2_of_labels(k, sides, 30), looped, rtol=0, atol=1e-12)


def test_settings_that_would_silence_a_drift_test_are_refused():
    from pydantic import ValidationError

    from feedback_collector.settings import FeedbackSettings

    with pytest.raises(ValidationError, match="QUALITY_BASELINE"):
        FeedbackSettings(quality_baseline=0.2, quality_shifted=0.1)
    with pytest.raises(ValidationError, match="DRIFT_MIN_WINDOW"):
        FeedbackSettings(drift_window=20, drift_min_window=50)
