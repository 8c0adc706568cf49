# ruff: noqa: RUF002
"""Seeded rollouts: false-rollback rate under continuous monitoring and detection power.

The fast subset runs in `make test`; the slow-marked run uses 1,000 replicates per
scenario, as in docs/statistics.md.
"""

from __future__ import annotations

import numpy as np
import pytest

from streammon.decide.policy import MetricSpec, RolloutPolicy, assess_rollout
from streammon.sim.cell_draws import draw_cells, make_plan
from streammon.sim.event_operating_points import wilson
from streammon.sim.operating_points import catalog, evaluate
from streammon.stats import compute_sequence
from streammon.stats.evidence import log_mean_e

SCENARIOS = {s.name: s for s in catalog()}
NULLS = [s.name for s in catalog() if not s.harmful]
FAST_NULLS = ["conversion A/A", "ramp 5%->50% + time-of-day drift A/A",
              "ramp + segment-mix shift A/A", "latency A/A (lognormal)"]


@pytest.mark.parametrize("name", FAST_NULLS)
def test_fast_false_rollback_rate_stays_below_alpha(name: str) -> None:
    """200 A/A rollouts, a look after each of 200 windows: false rollbacks ≤ α/2 (+ noise)."""
    point = evaluate(SCENARIOS[name], replicates=200, seed=100)
    assert point.rollback_rate <= 0.04


def test_fast_naive_rule_rolls_back_healthy_canaries() -> None:
    """The repeated 95% CI rolls back far more than α, and pooling under a ramp always does."""
    conv = evaluate(SCENARIOS["conversion A/A"], replicates=200, seed=200)
    ramp = evaluate(SCENARIOS["ramp 5%->50% + time-of-day drift A/A"], replicates=100, seed=300)
    assert conv.naive_pooled_rate > 0.12
    assert ramp.naive_pooled_rate > 0.95
    assert ramp.rollback_rate <= 0.04


def test_fast_five_percent_drop_is_detected_within_twelve_windows_median() -> None:
    """10% → 9.5% conversion at 3,000 canary requests/window: median detection ≤ 12 windows."""
    point = evaluate(SCENARIOS["conversion 10% -> 9.5% (-5% rel.)"], replicates=200, seed=400)
    assert point.median_detection <= 12
    assert point.rollback_rate == 1.0


def _averaged_rollbacks(policy: RolloutPolicy, replicates: int, seed: int) -> float:
    """Return the share of A/A rollouts whose averaged harm e-value ever reaches 1/α_r."""
    plan = make_plan("binary", windows=200, segment_means=(0.15, 0.12, 0.08, 0.05))
    log_es = []
    for i in range(len(policy.metrics)):
        cells = draw_cells(plan, replicates, seed=seed + i)
        result = compute_sequence(cells, kind="binary", bad_direction="decrease", alpha=0.025)
        assert result.log_e_harm is not None
        log_es.append(result.log_e_harm)
    peak = np.max(log_mean_e(log_es), axis=-1)
    return float((peak >= np.log(1.0 / policy.rollback_alpha)).mean())


def test_fast_policy_level_false_rollback_rate_with_five_metrics() -> None:
    """A/A with 5 metrics, rollback on their averaged e-values: false rollbacks ≤ α/2 (+ noise)."""
    policy = RolloutPolicy(metrics=tuple(MetricSpec(f"m{i}", "binary", "decrease")
                                         for i in range(5)))
    assert _averaged_rollbacks(policy, 200, 500) <= 0.04


def test_assess_rollout_agrees_with_the_vectorized_replay() -> None:
    """The decider's verdict after the last window equals the batch computation per replicate."""
    spec = MetricSpec("conv", "binary", "decrease")
    policy = RolloutPolicy(metrics=(spec,), srm_alpha=0.0001)
    plan = make_plan("binary", windows=40, segment_means=(0.1, 0.1), relative_effect=-0.04)
    cells = draw_cells(plan, 12, seed=600)
    log_e = compute_sequence(cells, kind="binary", bad_direction="decrease",
                             alpha=policy.metric_alpha).log_e_harm
    assert log_e is not None
    harm = np.max(log_e, axis=-1) >= np.log(1.0 / policy.rollback_alpha)
    for r in range(12):
        one = {k: v[r] for k, v in cells.to_dict().items()}
        assignment = {"n_a": one["n_a"], "n_b": one["n_b"], "fraction": np.full(40, 0.05)}
        a = assess_rollout(policy, {"conv": one}, assignment, stage=0, windows_in_stage=1)
        assert (a.action == "rollback") == bool(harm[r])


@pytest.mark.slow
@pytest.mark.parametrize("name", NULLS)
def test_slow_false_rollback_rate_over_1000_replicates(name: str) -> None:
    """1,000 A/A rollouts per no-difference scenario: false rollbacks ≤ α/2 = 2.5%.

    The observed rate may exceed 2.5% by sampling noise; its Wilson interval may not lie
    above it.
    """
    point = evaluate(SCENARIOS[name], replicates=1000, seed=1)
    low, _high = wilson(round(point.rollback_rate * 1000), 1000)
    assert low <= 0.025


@pytest.mark.slow
def test_slow_policy_level_false_rollback_rate_with_five_metrics() -> None:
    """1,000 A/A rollouts with 5 metrics on averaged e-values: false rollbacks ≤ α/2."""
    policy = RolloutPolicy(metrics=tuple(MetricSpec(f"m{i}", "binary", "decrease")
                                         for i in range(5)))
    rate = _averaged_rollbacks(policy, 1000, 700)
    assert wilson(round(rate * 1000), 1000)[0] <= 0.025


@pytest.mark.slow
def test_slow_error_rate_doubling_is_caught_near_the_fixed_horizon() -> None:
    """0.1% → 0.2% errors: median detection ≤ 1.5× the fixed-horizon test's windows."""
    point = evaluate(SCENARIOS["error rate doubling 0.1% -> 0.2% (count)"], replicates=1000,
                     seed=4)
    assert point.median_detection <= 1.5 * point.fixed_horizon


@pytest.mark.slow
def test_slow_two_percent_drop_is_detected_in_95_percent_of_runs() -> None:
    """10% → 9.8% conversion: detected within 200 windows in ≥ 97% of 1,000 rollouts.

    The observed rate may fall below 97% by sampling noise; its Wilson interval may not.
    """
    point = evaluate(SCENARIOS["conversion 10% -> 9.8% (-2% rel.)"], replicates=1000, seed=2)
    assert wilson(round(point.rollback_rate * 1000), 1000)[1] >= 0.97


@pytest.mark.slow
def test_slow_five_percent_drop_median_detection() -> None:
    """10% → 9.5% conversion over 1,000 rollouts: median detection ≤ 1.2× fixed horizon."""
    point = evaluate(SCENARIOS["conversion 10% -> 9.5% (-5% rel.)"], replicates=1000, seed=3)
    assert point.median_detection <= 1.2 * point.fixed_horizon


def _false_promotions(replicates: int, seed: int) -> float:
    """Share of final stages of a candidate exactly at the margin that show non-inferiority."""
    margin = 0.005
    plan = make_plan("binary", windows=60, segment_means=(0.10,), relative_effect=-0.05,
                     fractions=(0.5,))
    cells = draw_cells(plan, replicates, seed=seed)
    result = compute_sequence(cells, kind="binary", bad_direction="decrease", alpha=0.025,
                              margin=margin, tau_min=margin)
    return float(result.noninferior[:, -1].mean())


def test_fast_a_candidate_at_the_margin_is_rarely_promoted() -> None:
    """Harm exactly at the margin: the promotion sequence (α/2, τ ≥ margin) says so ≤ α/2."""
    assert _false_promotions(300, 800) <= 0.04


@pytest.mark.slow
def test_slow_false_promotions_at_most_half_alpha() -> None:
    """1,000 final stages at the margin: false promotions consistent with ≤ α/2 = 2.5%."""
    rate = _false_promotions(1000, 900)
    assert wilson(round(rate * 1000), 1000)[0] <= 0.025
