# ruff: noqa: RUF002
"""Matched-cohort estimate: Simpson under a ramp, weights, CS arithmetic, p-value consistency."""

from __future__ import annotations

import numpy as np
import pytest

from streammon.stats import as_cells, compute_sequence, naive_rollback
from streammon.stats.confseq import half_normal_boundary


def _ramp_with_falling_base_rate() -> dict[str, np.ndarray]:
    """Noise-free A/A cells: split ramps 5%→50% while the base rate falls 14%→6%."""
    windows = 40
    fraction = np.repeat([0.05, 0.1, 0.2, 0.5], 10)
    rate = np.linspace(0.14, 0.06, windows)
    total = 60000.0
    n_b = (total * fraction)[:, None]
    n_a = total - n_b
    cells = {"n_a": n_a, "n_b": n_b, "sum_a": n_a * rate[:, None], "sum_b": n_b * rate[:, None]}
    cells["sumsq_a"], cells["sumsq_b"] = cells["sum_a"].copy(), cells["sum_b"].copy()
    return cells


def test_pooling_fakes_a_regression_under_a_ramp_with_drift_but_cells_do_not() -> None:
    """Simpson: pooled arms show a large false drop; the cell-wise estimate is exactly 0."""
    cells = as_cells(_ramp_with_falling_base_rate(), "binary")
    pooled_b = cells.sum_b.sum() / cells.n_b.sum()
    pooled_a = cells.sum_a.sum() / cells.n_a.sum()
    assert pooled_b - pooled_a < -0.01
    assert naive_rollback(cells, kind="binary", bad_direction="decrease")[-1]
    result = compute_sequence(cells, kind="binary", bad_direction="decrease", alpha=0.05)
    np.testing.assert_allclose(result.effect, 0.0, atol=1e-15)
    assert not result.harm.any()


def test_effect_is_the_inverse_variance_weighted_mean_of_cell_differences() -> None:
    """With two segments the estimate is Σ w d / Σ w with w = 1/(σ²_a/n_a + σ²_b/n_b)."""
    cells = {"n_a": np.array([[900.0, 100.0]]), "n_b": np.array([[100.0, 900.0]]),
             "sum_a": np.array([[90.0, 20.0]]), "sum_b": np.array([[8.0, 171.0]])}
    cells["sumsq_a"], cells["sumsq_b"] = cells["sum_a"], cells["sum_b"]
    result = compute_sequence(as_cells(cells, "binary"), kind="binary",
                              bad_direction="decrease", alpha=0.05)
    p = (np.array([98.0, 191.0]) + 0.5) / (1000.0 + 1.0)   # pooled per segment, smoothed
    var = p * (1 - p)
    w = 1.0 / (var / cells["n_a"][0] + var / cells["n_b"][0])
    d = cells["sum_b"][0] / cells["n_b"][0] - cells["sum_a"][0] / cells["n_a"][0]
    assert result.effect[0] == pytest.approx((w * d).sum() / w.sum())


def test_bounds_are_running_intersections_of_mixture_intervals_at_every_prefix(
        noisy_binary: dict[str, np.ndarray]) -> None:
    """Bounds equal the running max/min of Δ̂_t ∓ u(I_t)/I_t recomputed at every prefix.

    The mixture scale is the baseline mean at the first window with 100 baseline samples,
    fixed from then on.
    """
    from streammon.stats.meandiff import SCALE_MIN_N, _cell_effects

    cells = as_cells(noisy_binary, "binary")
    r = compute_sequence(cells, kind="binary", bad_direction="increase", alpha=0.05)
    d, w = _cell_effects(cells, "binary")
    lows, ups = [], []
    fixed = None
    for t in range(cells.shape[0]):
        info = w[: t + 1].sum()
        effect = (w[: t + 1] * d[: t + 1]).sum() / info
        base = cells.sum_a[: t + 1].sum() / cells.n_a[: t + 1].sum()
        if fixed is None and cells.n_a[: t + 1].sum() >= SCALE_MIN_N:
            fixed = base
        base = base if fixed is None else fixed
        radius = half_normal_boundary(np.array([info]), 1.0 / (0.05 * base) ** 2, 0.05)[0] / info
        assert r.effect[t] == pytest.approx(effect, rel=1e-12)
        lows.append(effect - radius)
        ups.append(effect + radius)
    np.testing.assert_allclose(r.lower, np.maximum.accumulate(lows), rtol=1e-10)
    np.testing.assert_allclose(r.upper, np.minimum.accumulate(ups), rtol=1e-10)


def test_harm_flag_agrees_with_the_anytime_p_value(noisy_binary: dict[str, np.ndarray]) -> None:
    """Rollback after window t exactly when the running-minimum p-value is below α."""
    r = compute_sequence(as_cells(noisy_binary, "binary"), kind="binary",
                         bad_direction="decrease", alpha=0.05)
    np.testing.assert_array_equal(r.harm, r.p_harm < 0.05)
    assert np.all(np.diff(r.p_harm) <= 0)
    assert np.all(np.diff(r.lower) >= 0) and np.all(np.diff(r.upper) <= 0)


def test_continuous_metric_detects_a_latency_increase() -> None:
    """A 10% latency increase with equal spread is rolled back; a decrease is not harm."""
    rng = np.random.default_rng(3)
    x_a = rng.lognormal(np.log(100), 0.5, size=(30, 2, 2000))
    x_b = rng.lognormal(np.log(110), 0.5, size=(30, 2, 200))
    cells = {"n_a": np.full((30, 2), 2000.0), "sum_a": x_a.sum(-1), "sumsq_a": (x_a**2).sum(-1),
             "n_b": np.full((30, 2), 200.0), "sum_b": x_b.sum(-1), "sumsq_b": (x_b**2).sum(-1)}
    up = compute_sequence(as_cells(cells, "continuous"), kind="continuous",
                          bad_direction="increase", alpha=0.05)
    down = compute_sequence(as_cells(cells, "continuous"), kind="continuous",
                            bad_direction="decrease", alpha=0.05)
    assert up.harm[-1] and not down.harm.any()
    assert up.relative[-1] == pytest.approx(0.10, abs=0.03)


def test_the_mixture_scale_is_fixed_once_the_baseline_has_data() -> None:
    """A baseline mean that moves later does not move the boundary: the scale is fixed."""
    from streammon.stats.meandiff import _fixed_scale

    n = np.full((6, 1), 50.0)
    cells = as_cells({"n_a": n, "sum_a": n * np.array([[0.1], [0.1], [0.5], [0.5], [0.5],
                                                          [0.5]]),
                      "sumsq_a": n * 0.1, "n_b": n, "sum_b": n * 0.1, "sumsq_b": n * 0.1},
                     "continuous")
    scale = _fixed_scale(cells, np.array([0.1, 0.1, 0.233, 0.3, 0.34, 0.367]))
    np.testing.assert_allclose(scale, [0.1, 0.1, 0.1, 0.1, 0.1, 0.1])
