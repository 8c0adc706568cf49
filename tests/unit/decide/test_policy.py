# ruff: noqa: RUF002
"""One small test per rollout rule of streammon.decide.assess_rollout."""

from __future__ import annotations

import numpy as np
import pytest

from streammon.decide.policy import (
    MetricSpec,
    RolloutPolicy,
    assess_rollout,
    worst,
)
from streammon.decide.strategies import ramp
from streammon.events import Verdict
from streammon.stats import StatsInputError

CONV = MetricSpec("conversion", "binary", "decrease", margin=0.005)


def _cells(windows: int, p_b: float, n_b: float = 3000.0, n_a: float = 57000.0) -> dict:
    shape = (windows, 2)
    cells = {"n_a": np.full(shape, n_a / 2), "n_b": np.full(shape, n_b / 2),
             "sum_a": np.full(shape, n_a / 2 * 0.10), "sum_b": np.full(shape, n_b / 2 * p_b)}
    cells["sumsq_a"], cells["sumsq_b"] = cells["sum_a"], cells["sum_b"]
    return cells


def _assignment(windows: int, n_b: float = 3000.0, fraction: float = 0.05) -> dict:
    return {"n_a": np.full(windows, 60000.0 - n_b), "n_b": np.full(windows, n_b),
            "fraction": np.full(windows, fraction)}


def _policy(**kwargs: object) -> RolloutPolicy:
    return RolloutPolicy(metrics=(CONV,), step_windows=5, min_samples_per_stage=10000,
                         **kwargs)  # type: ignore[arg-type]


def test_fraction_follows_the_geometric_ramp_capped_at_f_max() -> None:
    """f_s = min(f_max, f0 · growth^s)."""
    policy = _policy(stages=ramp(0.05, 0.5, growth=2.0))
    assert [policy.fraction_at(s) for s in range(6)] == [0.05, 0.1, 0.2, 0.4, 0.5, 0.5]


def test_alpha_is_halved_between_rollback_and_promotion() -> None:
    """Rollback gets α/2 − α_srm (averaged e-values), shown bounds and promotion α/2 a side."""
    policy = RolloutPolicy(metrics=(CONV, MetricSpec("lat", "continuous", "increase")),
                           alpha=0.05, srm_alpha=0.001)
    assert policy.rollback_alpha == pytest.approx(0.024)
    assert policy.metric_alpha == pytest.approx(0.025)


def _novelty_cells(windows: int, switch: int) -> dict:
    """Conversion +5% (relative) before ``switch``, −5% after it."""
    cells = _cells(windows, 0.105)
    cells["sum_b"][switch:] = 1500 * 0.095
    cells["sumsq_b"] = cells["sum_b"]
    return cells


def test_promotion_uses_only_the_final_stage_and_waits_its_dwell() -> None:
    """Stale good evidence from earlier stages never promotes; the final stage must show it."""
    policy = _policy(stages=(0.05,), min_final_windows=3)
    good = _cells(30, 0.105)
    early = assess_rollout(policy, {"conversion": good}, _assignment(30), 0, 2)
    assert early.action == "continue"  # non-inferior overall, but only 2 windows in stage
    late = assess_rollout(policy, {"conversion": good}, _assignment(30), 0, 30)
    assert late.action == "promote"


def test_a_candidate_better_at_first_and_worse_now_is_never_promoted() -> None:
    """A novelty effect (better, then worse) holds or rolls back; it is never promoted."""
    policy = _policy(stages=(0.05,), min_final_windows=1)
    for t in range(12, 40):
        a = assess_rollout(policy, {"conversion": _novelty_cells(t, 10)}, _assignment(t), 0,
                           t - 10)
        assert a.action != "promote", t


def test_an_empty_intersection_holds_with_the_reason_and_shows_uncrossed_bounds() -> None:
    """When the whole-rollout bounds cross, the rollout holds, and the bounds shown do not cross."""
    policy = _policy(stages=(0.05,))
    strong = _cells(40, 0.115)
    strong["sum_b"][20:] = 1500 * 0.095
    strong["sumsq_b"] = strong["sum_b"]
    a = assess_rollout(policy, {"conversion": strong}, _assignment(40), 0, 20)
    assert (a.verdict, a.action) == (Verdict.HALT, "hold")
    assert "effect changed" in a.message
    assert all(e.lower <= e.upper for e in a.estimates)


def test_rollback_averages_the_metrics_e_values() -> None:
    """Two metrics each short of the Bonferroni bar roll back together on their average."""
    lat = MetricSpec("conversion2", "binary", "decrease", margin=0.005)
    policy = RolloutPolicy(metrics=(CONV, lat), step_windows=5, min_samples_per_stage=10000)
    cells = _cells(6, 0.0925)
    a = assess_rollout(policy, {"conversion": cells, "conversion2": cells}, _assignment(6), 0, 1)
    assert a.action == "rollback"
    bonferroni = policy.rollback_alpha / 2
    assert all(e.p_harm > bonferroni for e in a.estimates)  # neither alone clears alpha_r / 2


def test_no_windows_is_pending() -> None:
    """Before the first closed window the verdict is PENDING and traffic stays at f0."""
    a = assess_rollout(_policy(), {"conversion": _cells(0, 0.1)}, _assignment(0), 0, 0)
    assert (a.verdict, a.action, a.fraction) == (Verdict.PENDING, "continue", 0.05)


def test_harm_rolls_back_to_zero_traffic() -> None:
    """A clear conversion drop rolls back and sets the canary fraction to 0."""
    a = assess_rollout(_policy(), {"conversion": _cells(20, 0.08)}, _assignment(20), 0, 20)
    assert (a.verdict, a.action, a.fraction) == (Verdict.ROLLBACK, "rollback", 0.0)
    assert a.estimates[0].upper < 0


def test_clean_stage_steps_to_the_next_fraction() -> None:
    """After step_windows clean windows with enough canary samples the rollout steps."""
    a = assess_rollout(_policy(), {"conversion": _cells(5, 0.10)}, _assignment(5), 0, 5)
    assert (a.verdict, a.action, a.stage) == (Verdict.STEP, "step", 1)
    assert a.fraction == pytest.approx(0.1)


def test_too_few_canary_samples_hold_the_stage() -> None:
    """Below min_samples_per_stage the rollout continues at the current fraction."""
    a = assess_rollout(_policy(), {"conversion": _cells(5, 0.10)}, _assignment(5), 0, 3)
    assert (a.verdict, a.action, a.fraction) == (Verdict.RUNNING, "continue", 0.05)


def test_promote_at_f_max_once_non_inferiority_is_shown() -> None:
    """At f_max, an equal canary is promoted when harm beyond the margin is excluded."""
    cells = _cells(60, 0.10, n_b=30000.0, n_a=30000.0)
    a = assess_rollout(_policy(), {"conversion": cells}, _assignment(60, 30000.0, 0.5), 9, 60)
    assert (a.verdict, a.action, a.fraction) == (Verdict.PROMOTE, "promote", 1.0)


def test_no_promotion_below_f_max() -> None:
    """Non-inferiority below f_max steps instead of promoting."""
    a = assess_rollout(_policy(), {"conversion": _cells(60, 0.10)}, _assignment(60), 0, 60)
    assert a.action == "step"


def test_sample_ratio_mismatch_halts_without_judging_metrics() -> None:
    """A router sending 10% instead of 5% halts even if the metric looks harmful."""
    a = assess_rollout(_policy(), {"conversion": _cells(10, 0.05)},
                       _assignment(10, n_b=6000.0, fraction=0.05), 0, 10)
    assert (a.verdict, a.action, a.estimates) == (Verdict.HALT, "hold", ())


def test_label_delay_ignores_immature_windows() -> None:
    """With a 5-window label delay, harm only in the last 5 windows is not yet judged."""
    cells = _cells(30, 0.10)
    cells["sum_b"] = cells["sum_b"].copy()
    cells["sum_b"][-5:] = 0.0
    cells["sumsq_b"] = cells["sum_b"]
    delayed = RolloutPolicy(metrics=(MetricSpec("conversion", "binary", "decrease",
                                                label_delay_windows=5),))
    a = assess_rollout(delayed, {"conversion": cells}, _assignment(30), 0, 1)
    assert a.verdict != Verdict.ROLLBACK
    assert a.estimates[0].windows_judged == 25
    b = assess_rollout(_policy(), {"conversion": cells}, _assignment(30), 0, 1)
    assert b.verdict == Verdict.ROLLBACK


def test_nan_cells_become_an_error_verdict_not_an_exception() -> None:
    """Bad arrays inside the decision produce ERROR with a message naming the field."""
    cells = _cells(5, 0.10)
    cells["sum_a"] = cells["sum_a"].copy()
    cells["sum_a"][0, 0] = np.nan
    a = assess_rollout(_policy(), {"conversion": cells}, _assignment(5), 0, 5)
    assert (a.verdict, a.action) == (Verdict.ERROR, "hold")
    assert "sum_a" in a.message


def test_missing_metric_is_an_error_verdict() -> None:
    """A metric of the policy without cells is reported, not raised."""
    a = assess_rollout(_policy(), {}, _assignment(5), 0, 5)
    assert a.verdict == Verdict.ERROR and "conversion" in a.message


def test_worst_verdict_wins() -> None:
    """Rollback beats everything; one running metric blocks a promotion."""
    assert worst([Verdict.PROMOTE, Verdict.ROLLBACK, Verdict.ERROR]) == Verdict.ROLLBACK
    assert worst([Verdict.PROMOTE, Verdict.RUNNING]) == Verdict.RUNNING
    assert worst([Verdict.PROMOTE, Verdict.PENDING]) == Verdict.PENDING


def test_invalid_policy_names_the_field() -> None:
    """A policy with srm_alpha ≥ alpha or a bad metric kind is rejected with the field name."""
    with pytest.raises(StatsInputError, match="srm_alpha"):
        RolloutPolicy(metrics=(CONV,), alpha=0.01, srm_alpha=0.01)
    with pytest.raises(StatsInputError, match="kind"):
        MetricSpec("x", "ratio", "decrease")  # type: ignore[arg-type]
