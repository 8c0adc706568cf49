# ruff: noqa: RUF002
"""CUPED adjustment: θ from earlier windows only, unbiased effect, smaller variance."""

from __future__ import annotations

import numpy as np
import pytest

from streammon.backtest import parse_spec, replay_events
from streammon.errors import ConfigError
from streammon.events import Outcome, Prediction
from streammon.join.changelog import JoinLog, restore
from streammon.join.state import JoinConfig, JoinState
from streammon.sim.cuped_draws import (
    CovariatePlan,
    draw_covariate_cells,
    evaluate_production,
)
from streammon.sim.event_draws import EventPlan, draw_events
from streammon.sim.event_operating_points import production_spec
from streammon.stats.cuped import COVARIATE_FIELDS, Covariate, adjust_cells, adjustment
from streammon.stats.sequence import compute_sequence


def test_theta_is_estimated_from_earlier_windows_only() -> None:
    """θ_t and m_t do not change when window t or later ones change; window 0 uses its own."""
    cells, cov = draw_covariate_cells(CovariatePlan(windows=6), 1, 3)
    theta, mean = adjustment(cells, cov)
    first_only, first_mean = adjustment(cells.head(1), _head(cov, 1))
    assert theta[0, 0] == first_only[0, 0] == pytest.approx(1.0, abs=0.3)
    x_total = cov.sum_x_a[0, 0].sum() + cov.sum_x_b[0, 0].sum()
    assert mean[0, 0] == pytest.approx(x_total / (cells.n_a[0, 0].sum() + cells.n_b[0, 0].sum()))
    assert first_mean[0, 0] == mean[0, 0]
    # window 0's θ is centred over both arms pooled: a function of the pooled requests,
    # which another draw of the assignment would only split differently
    n = cells.n_a[0, 0] + cells.n_b[0, 0]
    x, y = cov.sum_x_a[0, 0] + cov.sum_x_b[0, 0], cells.sum_a[0, 0] + cells.sum_b[0, 0]
    s_xy = (cov.sum_xy_a[0, 0] + cov.sum_xy_b[0, 0] - x * y / n).sum()
    s_xx = (cov.sumsq_x_a[0, 0] + cov.sumsq_x_b[0, 0] - x * x / n).sum()
    assert theta[0, 0] == pytest.approx(s_xy / s_xx, rel=1e-12)
    cov.sum_xy_a[0, 4:] *= 3.0
    later, _ = adjustment(cells, cov)
    np.testing.assert_array_equal(later[0, :5], theta[0, :5])
    assert later[0, 5] != theta[0, 5]


def _head(cov: Covariate, windows: int) -> Covariate:
    return Covariate(*(getattr(cov, f)[..., :windows, :] for f in COVARIATE_FIELDS))


def test_theta_recovers_cov_over_var_and_the_adjusted_variance_shrinks_by_r2() -> None:
    """With Cov(x, y) = Var(x) θ ≈ 1, and Var(y') ≈ (1 − R²) Var(y) = 0.8 Var(y)."""
    cells, cov = draw_covariate_cells(CovariatePlan(windows=20, r2=0.2), 1, 5)
    theta, _ = adjustment(cells, cov)
    assert theta[0, -1] == pytest.approx(1.0, abs=0.05)
    adjusted = adjust_cells(cells, cov)
    n = adjusted.n_a[0, 5:].sum()
    mean = adjusted.sum_a[0, 5:].sum() / n
    var_adj = adjusted.sumsq_a[0, 5:].sum() / n - mean**2
    p = cells.sum_a[0, 5:].sum() / cells.n_a[0, 5:].sum()
    assert var_adj / (p * (1 - p)) == pytest.approx(0.8, abs=0.03)
    assert mean == pytest.approx(p, rel=0.02)  # m_t keeps the adjusted mean near the raw one


def test_the_adjusted_effect_estimates_the_same_difference() -> None:
    """Over many replicates the adjusted effect's mean equals the raw effect's (−5% of 10%)."""
    cells, cov = draw_covariate_cells(CovariatePlan(windows=10, relative_effect=-0.05), 200, 9)
    raw = compute_sequence(cells, kind="binary", bad_direction="decrease", alpha=0.025)
    adj = compute_sequence(adjust_cells(cells, cov), kind="continuous",
                           bad_direction="decrease", alpha=0.025)
    assert adj.effect[:, -1].mean() == pytest.approx(-0.005, abs=0.0006)
    assert adj.effect[:, -1].std() < raw.effect[:, -1].std()


def test_production_spec_with_a_covariate_stays_valid_and_detects_sooner() -> None:
    """A/A: false rollbacks ≤ 2.5% with CUPED; a −5% drop is rolled back sooner with it."""
    null = evaluate_production(CovariatePlan(windows=100), 300, 11)
    assert null.rollback_rate <= 0.025
    with_cov = evaluate_production(CovariatePlan(relative_effect=-0.05), 200, 12)
    without = evaluate_production(CovariatePlan(relative_effect=-0.05), 200, 12,
                                  covariate=False)
    assert with_cov.rollback_rate == 1.0
    assert with_cov.median_detection < without.median_detection


def test_spec_weights_favouring_conversion_keep_the_guarantee_and_catch_it_sooner() -> None:
    """Weights 8:1:1 declared before the rollout: A/A false rollbacks stay ≤ 2.5%, and a
    −5% conversion drop is rolled back sooner than with the plain average."""
    weights = (8.0, 1.0, 1.0)
    null = evaluate_production(CovariatePlan(windows=100), 300, 11, weights=weights)
    assert null.rollback_rate <= 0.025
    favoured = evaluate_production(CovariatePlan(relative_effect=-0.05), 300, 12,
                                   weights=weights)
    equal = evaluate_production(CovariatePlan(relative_effect=-0.05), 300, 12)
    assert favoured.rollback_rate == 1.0
    assert favoured.median_detection < equal.median_detection


def test_the_join_adds_covariate_sums_and_keeps_them_through_the_changelog() -> None:
    """A pending prediction's covariate survives a crash (changelog restore) and joins its
    outcome into ``label:x`` and ``label:xy``."""
    config = JoinConfig(window_ms=60_000, ttl_ms=3_600_000, grace_ms=1000)
    state, log = JoinState(config=config), JoinLog()
    state.add_predictions([Prediction(request_id="r1", rollout_id="ro", model_version="m",
                                      arm="canary", ts_ms=1000, covariate=0.25)])
    records, _ = log.write(state, state.take_changes(), {"p": 1})
    restored, _, _ = restore([raw for _, raw in records], config)
    restored.add_outcomes([Outcome(request_id="r1", rollout_id="ro", ts_ms=2000, label=1.0)])
    cell = next(iter(restored.cells.values()))
    assert cell.sums["label:x"][:3] == [1, 0.25, 0.0625]
    assert cell.sums["label:xy"][:3] == [1, 0.25, 0.0625]


def test_a_covariate_on_a_prediction_side_metric_names_the_field() -> None:
    """``covariate`` is for label/value; elsewhere the error names metrics[i].covariate."""
    spec = production_spec()
    spec["metrics"][1] = {**spec["metrics"][1], "covariate": True}
    with pytest.raises(ConfigError, match=r"metrics\[1\]\.covariate"):
        parse_spec(spec)


def test_replay_with_a_covariate_keeps_a_healthy_candidate_and_rolls_back_a_drop() -> None:
    """Event level: CUPED-adjusted conversion does not roll back A/A and catches −30%."""
    spec = production_spec()
    spec["metrics"][0] = {**spec["metrics"][0], "covariate": True}
    for effect, expected in ((0.0, False), (-0.3, True)):
        plan = EventPlan(windows=25, requests_per_window=2000,
                         fractions=(0.05, 0.1, 0.2, 0.4, 0.5), step_windows=5,
                         covariate_r2=0.2, effect=(effect,))
        preds, outs = draw_events(plan, 21)
        decisions = replay_events(spec, preds, outs)
        assert (decisions[-1]["action"] == "rollback") is expected, decisions[-1]
