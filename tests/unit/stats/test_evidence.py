# ruff: noqa: RUF002
"""streammon.stats.evidence: averaged e-values, stage-only non-inferiority, crossed bounds."""

from __future__ import annotations

import numpy as np
import pytest

from streammon.stats import StatsInputError
from streammon.stats.evidence import assess_metric_evidence, averaged_harm, log_mean_e


def _cells(p_b: list[float], n: float = 20_000.0, p_a: float = 0.10) -> dict[str, np.ndarray]:
    windows = len(p_b)
    n_a = np.full((windows, 1), n)
    sum_b = (np.asarray(p_b) * n).reshape(-1, 1)
    return {"n_a": n_a, "sum_a": n_a * p_a, "sumsq_a": n_a * p_a, "n_b": n_a.copy(),
            "sum_b": sum_b, "sumsq_b": sum_b}


def test_log_mean_e_is_the_log_of_the_arithmetic_mean() -> None:
    """log_mean_e averages e-values, not log e-values."""
    got = log_mean_e([np.log(np.array([1.0, 10.0])), np.log(np.array([3.0, 30.0]))])
    assert np.allclose(np.exp(got), [2.0, 20.0])


def test_weighted_log_mean_e_is_the_log_of_the_weighted_mean() -> None:
    """Spec weights (3:1) average e-values as 0.75·e1 + 0.25·e2; None means equal weights."""
    e1, e2 = np.log(np.array([1.0, 40.0])), np.log(np.array([4.0, 1e-300]))
    got = log_mean_e([e1, e2], [3.0, 1.0])
    assert np.allclose(np.exp(got), [0.75 + 1.0, 30.0])
    assert np.array_equal(log_mean_e([e1, e2], None), log_mean_e([e1, e2]))
    assert averaged_harm([e1, e2], 0.04, [3.0, 1.0]) == (True, pytest.approx(1 / 30))
    assert averaged_harm([e1, e2], 0.04) == (False, pytest.approx(1 / 20))  # 20 < 25
    for bad in ([1.0], [1.0, 0.0], [1.0, float("nan")]):
        with pytest.raises(StatsInputError, match="weights"):
            log_mean_e([e1, e2], bad)


def test_averaged_harm_uses_the_running_peak() -> None:
    """Evidence once over 1/α stays a rollback even if the e-value later falls."""
    harm, p = averaged_harm([np.log(np.array([1.0, 50.0, 2.0]))], alpha_rollback=0.025)
    assert harm and p == pytest.approx(0.02)
    assert not averaged_harm([np.log(np.array([1.0, 30.0, 2.0]))], 0.025)[0]


def test_averaging_needs_a_metric() -> None:
    """Averaging no e-values is an input error."""
    with pytest.raises(StatsInputError):
        log_mean_e([])


def test_stage_evidence_ignores_earlier_stages() -> None:
    """Good windows before the stage do not make the stage non-inferior."""
    cells = _cells([0.12] * 20 + [0.10] * 2)
    whole_only = assess_metric_evidence(cells, kind="binary", bad_direction="decrease",
                                        margin=0.002, label_delay_windows=0, alpha=0.05,
                                        stage_start=20)
    assert not whole_only.stage_noninferior
    from_start = assess_metric_evidence(cells, kind="binary", bad_direction="decrease",
                                        margin=0.002, label_delay_windows=0, alpha=0.05,
                                        stage_start=0)
    assert from_start.stage_noninferior


def test_crossed_bounds_are_flagged_and_replaced_by_the_stage_bounds() -> None:
    """An effect that flips makes the running intersection empty; stage bounds are shown."""
    cells = _cells([0.115] * 20 + [0.095] * 20)
    e = assess_metric_evidence(cells, kind="binary", bad_direction="decrease", margin=0.0,
                               label_delay_windows=0, alpha=0.05, stage_start=20)
    assert e.crossed
    assert e.lower <= -0.005 <= e.upper  # the current stage's interval covers its effect
    assert e.effect == pytest.approx(-0.005, abs=1e-9)  # and the effect shown is the stage's
    assert e.lower <= e.effect <= e.upper


def test_label_delay_pads_the_e_values_with_ones() -> None:
    """A metric judged d windows late has e = 1 (log 0) at its first d decisions."""
    cells = _cells([0.05] * 6)
    e = assess_metric_evidence(cells, kind="binary", bad_direction="decrease", margin=0.0,
                               label_delay_windows=2, alpha=0.05, stage_start=0)
    assert e.log_e_harm.shape == (6,)
    assert np.all(e.log_e_harm[:2] == 0.0) and e.log_e_harm[-1] > 5
