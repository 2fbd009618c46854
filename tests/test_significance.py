"""Working points, significances and read-offs against hand-computed values (physics.md s. 10)."""

import math

import numpy as np
import pytest
from scipy.stats import mannwhitneyu

from darkvalley_core.errors import ConfigError
from darkvalley_core.significance import (
    asimov_significance,
    background_subtracted_significance,
    crossing,
    five_sigma_reach,
    ideal_significance,
    learning_threshold,
    roc_auc,
    sculpting_check,
    signal_efficiency,
    summarise,
    threshold_at_background_efficiency,
)

# ----------------------------------------------------------------------------- roc_auc


def test_roc_auc_hand_example():
    # Pairs (pos, neg): 0.35 beats 0.1, loses to 0.4; 0.8 beats both -> 3 of 4.
    assert roc_auc([0.1, 0.4, 0.35, 0.8], [0, 0, 1, 1]) == pytest.approx(0.75)
    assert roc_auc([0.5, 0.5], [0, 1]) == pytest.approx(0.5)  # a tie counts 1/2
    assert roc_auc([1, 2, 3], [0, 1, 1]) == 1.0
    assert roc_auc([3, 2, 1], [0, 1, 1]) == 0.0
    assert roc_auc(np.array([0.2, 0.2, 0.9]), np.array([True, False, True])) == pytest.approx(0.75)


def test_roc_auc_matches_mann_whitney_with_ties():
    rng = np.random.default_rng(1)
    s = rng.integers(0, 7, 500).astype(float)  # many ties
    y = rng.random(500) < 0.3 + 0.05 * s
    u = mannwhitneyu(s[y], s[~y]).statistic
    assert roc_auc(s, y) == pytest.approx(u / (y.sum() * (~y).sum()), rel=1e-12)


def test_roc_auc_integer_weights_equal_repeated_events():
    rng = np.random.default_rng(2)
    s, y = rng.random(50), rng.integers(0, 2, 50)
    w = rng.integers(1, 4, 50)
    assert roc_auc(s, y, w) == pytest.approx(roc_auc(np.repeat(s, w), np.repeat(y, w)))


def test_roc_auc_rejects_bad_input():
    with pytest.raises(ConfigError):
        roc_auc([0.1, 0.2], [1, 1])
    with pytest.raises(ConfigError):
        roc_auc([0.1, 0.2], [0, 2])
    with pytest.raises(ConfigError):
        roc_auc([0.1, np.nan], [0, 1])
    with pytest.raises(ConfigError):
        roc_auc([], [])


# ----------------------------------------------------------------------------- working points


def test_threshold_passes_the_requested_fraction():
    bkg = np.random.default_rng(0).permutation(np.arange(1000) / 1000.0)
    for eps, n_pass in ((0.1, 100), (0.01, 10), (0.001, 1)):
        t = threshold_at_background_efficiency(bkg, eps)
        assert (bkg > t).sum() == n_pass
        assert signal_efficiency(bkg, t) == pytest.approx(eps)
    ts = threshold_at_background_efficiency(bkg, [0.1, 0.01])
    assert ts.shape == (2,) and ts[0] < ts[1]


def test_threshold_rejects_unresolvable_working_points():
    with pytest.raises(ConfigError, match="at least 1000"):
        threshold_at_background_efficiency(np.arange(500.0), 0.001)
    for eps in (0.0, 1.0, -0.1):
        with pytest.raises(ConfigError):
            threshold_at_background_efficiency(np.arange(500.0), eps)


def test_signal_efficiency_counts_strictly_above():
    s = [0.1, 0.5, 0.5, 0.9]
    assert signal_efficiency(s, 0.5) == 0.25
    assert signal_efficiency(s, 0.4) == 0.75
    np.testing.assert_allclose(signal_efficiency(s, [0.0, 0.95]), [1.0, 0.0])


def test_ideal_significance():
    assert ideal_significance(3.0, 0.3, 0.01) == pytest.approx(9.0)
    np.testing.assert_allclose(ideal_significance([0, 1, 2], 0.5, 0.25), [0, 1, 2])
    # no discrimination (eps_s = eps_b) loses: Z x sqrt(eps_b)
    assert ideal_significance(4.0, 0.01, 0.01) == pytest.approx(0.4)
    with pytest.raises(ConfigError):
        ideal_significance(1.0, 0.5, 0.0)


# ----------------------------------------------------------------------------- Asimov


def test_asimov_hand_value():
    # 2 [(110) ln 1.1 - 10] = 2 (10.48411977847574 - 10) = 0.96823955695148
    assert asimov_significance(10, 100) == pytest.approx(0.98399164475694, rel=1e-12)
    assert asimov_significance(10, 100) == pytest.approx(
        math.sqrt(2 * (110 * math.log(1.1) - 10)), rel=1e-14
    )
    # s = b: sqrt(2 b (2 ln 2 - 1))
    assert asimov_significance(50, 50) == pytest.approx(math.sqrt(100 * (2 * math.log(2) - 1)))


def test_asimov_small_signal_limit_and_series_continuity():
    for s, b in ((1e-6, 1.0), (0.5, 1e6), (1e-3, 10.0)):
        assert asimov_significance(s, b) == pytest.approx(s / math.sqrt(b), rel=1e-3)
    # series branch (|s/b| < 1e-3) and exact branch agree at the switch
    below, above = asimov_significance([0.999e-3 * 1e4, 1.001e-3 * 1e4], 1e4)
    assert above / below == pytest.approx(1.001 / 0.999, rel=1e-6)
    # the approximation s/sqrt(b) overestimates for s ~ b
    assert asimov_significance(100, 100) < 100 / math.sqrt(100)


def test_asimov_non_positive_signal_and_vectorisation():
    z = asimov_significance(np.array([-10.0, 0.0, 10.0]), 100)
    np.testing.assert_allclose(z, [0.0, 0.0, 0.98399164475694])
    zs = asimov_significance(np.array([-10.0, 0.0, 10.0]), 100, signed=True)
    assert zs[0] == pytest.approx(-math.sqrt(2 * (90 * math.log(0.9) + 10)))
    assert zs[1] == 0.0 and zs[2] == pytest.approx(z[2])
    # a deficit larger than b is clipped at "no event observed": -sqrt(2 b)
    assert asimov_significance(-300, 100, signed=True) == pytest.approx(-math.sqrt(200))
    assert asimov_significance([[1.0], [4.0]], [1.0, 4.0]).shape == (2, 2)
    with pytest.raises(ConfigError):
        asimov_significance(1.0, 0.0)


def test_background_subtracted_significance():
    assert background_subtracted_significance(110, 100) == pytest.approx(0.98399164475694)
    assert background_subtracted_significance(100, 100) == 0.0
    assert background_subtracted_significance(90, 100, signed=True) < 0
    np.testing.assert_allclose(
        background_subtracted_significance([100, 110, 120], [100, 100, 100]),
        asimov_significance([0, 10, 20], 100),
    )


# ----------------------------------------------------------------------------- read-offs


def test_summarise_ignores_failed_repetitions():
    m, s, n = summarise([[1.0, 2.0, np.nan], [3.0, 6.0, np.nan], [np.nan, 4.0, np.nan]])
    np.testing.assert_allclose(m[:2], [2.0, 4.0])
    np.testing.assert_allclose(s[:2], [1.0, math.sqrt(8 / 3)])
    assert np.isnan(m[2]) and np.isnan(s[2]) and list(n) == [2, 3, 0]
    assert summarise([[1.0, 3.0]], axis=1, ddof=1).std[0] == pytest.approx(math.sqrt(2))


def test_crossing_on_hand_made_curves():
    x = np.array([0.0, 1.0, 2.0, 3.0, 4.0])
    c = crossing(x, 2 * x, np.ones(5), 5.0)  # y = 2x crosses 5 at 2.5; 2x+1 at 2; 2x-1 at 3
    assert c == pytest.approx((2.5, 2.0, 3.0))
    never = crossing(x, 2 * x, np.ones(5), 10.0)  # mean tops at 8, mean+std at 9
    assert all(math.isnan(v) for v in never)
    partial = crossing(x, 2 * x, np.ones(5), 8.5)  # only mean + std reaches it, at 3.75
    assert math.isnan(partial.value) and partial.low == pytest.approx(3.75)
    assert math.isnan(partial.high)
    assert crossing(x, x + 1.0, None, 0.5).value == 0.0  # already above at the first point


def test_crossing_first_and_last_rules_on_a_wiggle():
    x = np.arange(6.0)
    y = np.array([0.0, 2.0, 0.5, 0.8, 3.0, 4.0])  # crosses 1 upwards at 0.5, then again at 3.1
    assert crossing(x, y, None, 1.0, rule="first").value == pytest.approx(0.5)
    assert crossing(x, y, None, 1.0, rule="last").value == pytest.approx(3.0 + 0.2 / 2.2)
    assert math.isnan(crossing(x, y[::-1], None, 1.0, rule="last").value)  # ends below


def test_crossing_validates_input():
    with pytest.raises(ConfigError):
        crossing([0, 1, 1], [0, 1, 2], None, 0.5)
    with pytest.raises(ConfigError):
        crossing([0, 1], [0, 1, 2], None, 0.5)
    with pytest.raises(ConfigError):
        crossing([0, 1], [0, 1], [-1, 1], 0.5)
    with pytest.raises(ConfigError):
        crossing([0, 1], [0, 1], None, 0.5, rule="middle")


def test_learning_threshold_and_five_sigma_reach():
    x = np.arange(0.0, 11.0)
    # no learning (Z = 0.3 x) below 4, then a steep rise
    z = np.where(x < 4, 0.3 * x, 1.2 + 2.5 * (x - 4))
    # d = z - x: d(4) = -2.8, d(5) = -1.3, d(6) = 0.2 -> crossing at 5 + 1.3/1.5
    lt = learning_threshold(x, z, np.full(11, 0.5))
    assert lt.value == pytest.approx(5 + 1.3 / 1.5)
    assert lt.low == pytest.approx(5 + 0.8 / 1.5) and lt.high == pytest.approx(5 + 1.8 / 1.5)
    # Z: 3.7 at x = 5, 6.2 at x = 6 -> 5 at 5 + 1.3 / 2.5
    assert five_sigma_reach(x, z, np.zeros(11)).value == pytest.approx(5 + 1.3 / 2.5)
    # ideal network with no gain at all: never above the line
    assert math.isnan(learning_threshold(x, x * 0.9).value)


def test_sculpting_check():
    rng = np.random.default_rng(3)
    sr, sb = rng.random(20000), rng.random(20000)
    c = sculpting_check(sr, sb, 0.9)
    assert c.eps_b_sr == pytest.approx(0.1, abs=0.01) and c.ratio == pytest.approx(1, abs=0.1)
    assert abs(c.ratio - 1) < 4 * c.ratio_err
    sculpted = sculpting_check([0.95, 0.95, 0.1, 0.1], [0.95, 0.1, 0.1, 0.1], 0.9)
    assert sculpted[:3] == pytest.approx((0.5, 0.25, 2.0))
