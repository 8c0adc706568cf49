"""Latency judged on its upper tail (a quantile spec field) and timeouts as their own metric."""

from __future__ import annotations

import numpy as np
import pytest

from streammon.backtest import parse_spec, replay_events
from streammon.decide import tail
from streammon.errors import ConfigError
from streammon.events import Prediction
from streammon.join.cells import LATENCY_BINS, CellState, latency_bin, latency_bin_metric
from streammon.sim.event_draws import EventPlan, draw_events
from streammon.sim.event_operating_points import tail_spec


def test_latency_bins_are_ten_per_decade_and_clipped() -> None:
    """Bin k holds [10^(k/10), 10^((k+1)/10)) ms; below 1 ms is bin 0, 100 s and up the last."""
    assert latency_bin(0.2) == 0
    assert latency_bin(1.0) == 0
    assert latency_bin(10.0) == 10
    assert latency_bin(99.0) == 19
    assert latency_bin(12.9) == latency_bin(12.0) == 10  # whole milliseconds below 10 s
    assert latency_bin(12_900.0) == 41
    assert latency_bin(1e9) == LATENCY_BINS - 1


def test_the_join_counts_latency_bins_and_timeouts_per_prediction() -> None:
    """Every prediction adds one to its latency bin; a timed-out one to the timeout count."""
    cell = CellState()
    for latency, timed_out in ((12.0, False), (15.0, False), (2000.0, True)):
        cell.add_prediction(Prediction(request_id=f"r{latency}", rollout_id="r",
                                       model_version="m", arm="canary", ts_ms=1,
                                       latency_ms=latency, timeout=timed_out))
    assert cell.sums["timeout"][:3] == [1, 1.0, 1.0]  # only timeouts; n comes from ``error``
    assert cell.sums["error"][0] == 3
    assert cell.sums[latency_bin_metric(10)][0] == 1
    assert cell.sums[latency_bin_metric(11)][0] == 1
    assert cell.sums[latency_bin_metric(33)][0] == 1


def test_calibration_fixes_the_threshold_at_the_baselines_quantile_on_the_grid() -> None:
    """τ is the lowest bin edge with at least q of the calibration window's baseline below it."""
    rng = np.random.default_rng(1)
    latencies = 40.0 * np.exp(0.5 * rng.standard_normal(5000))
    bins = np.zeros((3, LATENCY_BINS))
    bins[1] = np.bincount([latency_bin(x) for x in latencies], minlength=LATENCY_BINS)
    bins[0, 10] = 50  # too few requests to calibrate on
    window, first_above = tail.calibrate(bins, 0.95) or (-1, -1)
    assert window == 1
    edge = 10 ** (first_above / 10)
    assert np.mean(latencies < edge) >= 0.95
    assert np.mean(latencies < 10 ** ((first_above - 1) / 10)) < 0.95
    assert tail.calibrate(bins[:1], 0.95) is None


def test_exceedance_cells_leave_the_calibration_window_out() -> None:
    """Windows up to the calibration window are empty; later ones count slow requests."""
    shape = (3, 2)
    cells = {m: {f: np.zeros(shape) for f in ("n_a", "n_b")} for m in tail.BIN_METRICS}
    cells[latency_bin_metric(15)]["n_a"][:] = 90.0
    cells[latency_bin_metric(25)]["n_a"][:] = 10.0
    cells[latency_bin_metric(25)]["n_b"][:] = 7.0
    out = tail.exceedance_cells(cells, calibration=0, first_above=20)
    assert out["n_a"][0].sum() == 0 and out["sum_b"][0].sum() == 0
    assert out["n_a"][1, 0] == 100.0 and out["sum_a"][1, 0] == 10.0
    assert out["n_b"][2, 1] == 7.0 and out["sum_b"][2, 1] == 7.0


@pytest.mark.parametrize(("change", "field"), [
    ({"name": "value"}, "metrics[1].quantile is only for latency_ms"),
    ({"quantile": 1.2}, "metrics[1].quantile=1.2"),
    ({"margin": 2.0}, "metrics[1].margin=2.0"),
    ({"bad_direction": "decrease"}, "metrics[1].bad_direction"),
])
def test_a_bad_quantile_spec_names_the_field(change: dict, field: str) -> None:
    """Validation names metrics[i].quantile, its margin or its direction, with the fix."""
    spec = tail_spec()
    spec["metrics"][1] = {**spec["metrics"][1], **change}
    with pytest.raises(ConfigError, match=field.replace("[", r"\[").replace("]", r"\]")):
        parse_spec(spec)


def test_a_heavier_tail_rolls_back_on_the_quantile_metric() -> None:
    """3% of canary requests 5x slower is rolled back on latency_ms judged at p95."""
    plan = EventPlan(windows=40, requests_per_window=1000, fractions=(0.05, 0.1, 0.2, 0.4, 0.5),
                     step_windows=5, latency_slow_share=0.03, latency_slow_factor=5.0)
    preds, outs = draw_events(plan, 7)
    decisions = replay_events(tail_spec(), preds, outs)
    assert decisions[-1]["action"] == "rollback"
    assert "latency_ms" in decisions[-1]["reason"]


def test_same_latency_distribution_is_not_rolled_back_on_its_tail() -> None:
    """With the same latency in both arms the p95 and timeout metrics stay quiet."""
    plan = EventPlan(windows=30, requests_per_window=1000, fractions=(0.05, 0.1, 0.2, 0.4, 0.5),
                     step_windows=5, latency_sigma=1.2, timeout_ms=1000.0)
    for seed in (11, 12):
        preds, outs = draw_events(plan, seed)
        actions = [d["action"] for d in replay_events(tail_spec(), preds, outs)]
        assert "rollback" not in actions


def test_the_timeout_metric_counts_every_prediction_as_exposed() -> None:
    """The grid's timeout cells have n = predictions (from ``error``) and sum = timeouts."""
    from streammon.decide.progress import RolloutState, build_cells
    from streammon.events import CohortSummary, MetricSums

    spec = parse_spec(tail_spec(window_ms=1000))
    state = RolloutState(spec=spec, origin_ms=0)
    rows = [CohortSummary(rollout_id="sim", window_start_ms=0, window_ms=1000, segment="all",
                          arm=arm, source="p0", score_hist=[0] * 10, watermark_ms=1000,
                          metrics={"error": MetricSums(n, 0.0, 0.0),
                                   "timeout": MetricSums(t, float(t), float(t))})
            for arm, n, t in (("baseline", 900, 3), ("canary", 100, 2))]
    grid = build_cells(state, rows, 1)
    assert grid.cells["timeout"]["n_a"][0, 0] == 900 and grid.cells["timeout"]["sum_a"][0, 0] == 3
    assert grid.cells["timeout"]["n_b"][0, 0] == 100 and grid.cells["timeout"]["sum_b"][0, 0] == 2
