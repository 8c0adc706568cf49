"""The incremental decider (RolloutAssessor) decides exactly as the full recompute does."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from streammon.decide.assessor import RolloutAssessor
from streammon.decide.policy import Assessment, Coverage, MetricSpec, RolloutPolicy, assess_rollout
from streammon.stats import compute_drift
from streammon.stats.cells import FIELDS

METRICS = (
    MetricSpec("conversion", "binary", "decrease", margin=0.01, weight=2.0),
    MetricSpec("latency_ms", "continuous", "increase", margin=2.0, label_delay_windows=1),
    MetricSpec("errors", "count", "increase", margin=0.002),
)


def _draw_cells(rng: np.random.Generator, windows: int, segments: int, p_b: float,
                n_b: float) -> dict[str, dict[str, np.ndarray]]:
    shape = (windows, segments)
    n_a = rng.poisson(n_b * 9, shape).astype(float)
    nb = rng.poisson(n_b, shape).astype(float)
    nb[rng.random(shape) < 0.1] = 0.0  # some empty canary cells
    conv = {"n_a": n_a, "sum_a": rng.binomial(n_a.astype(int), 0.1).astype(float),
            "n_b": nb, "sum_b": rng.binomial(nb.astype(int), p_b).astype(float)}
    conv["sumsq_a"], conv["sumsq_b"] = conv["sum_a"], conv["sum_b"]
    lat: dict[str, np.ndarray] = {"n_a": n_a, "n_b": nb}
    for arm, n, mean in (("a", n_a, 100.0), ("b", nb, 100.0 + 20 * (0.1 - p_b))):
        lat[f"sum_{arm}"] = np.where(n > 0, n * mean + rng.normal(0, 30, shape) * np.sqrt(n), 0)
        lat[f"sumsq_{arm}"] = np.where(n > 0, lat[f"sum_{arm}"] ** 2 / np.maximum(n, 1)
                                       + 900 * n, 0)
    err = {"n_a": n_a, "sum_a": rng.poisson(n_a * 0.002).astype(float), "n_b": nb,
           "sum_b": rng.poisson(nb * 0.002 * (1 + 10 * (0.1 - p_b))).astype(float)}
    err["sumsq_a"], err["sumsq_b"] = err["sum_a"], err["sum_b"]
    return {"conversion": conv, "latency_ms": lat, "errors": err}


def _same(full: Assessment, inc: Assessment) -> None:
    assert (inc.action, inc.verdict, inc.stage, inc.fraction) == \
        (full.action, full.verdict, full.stage, full.fraction), (full.message, inc.message)
    assert inc.message == full.message or inc.message.split("(p")[0] == \
        full.message.split("(p")[0]
    assert math.isclose(inc.srm_p_value, full.srm_p_value, rel_tol=1e-9, abs_tol=1e-12) or \
        (math.isnan(inc.srm_p_value) and math.isnan(full.srm_p_value))
    assert len(inc.estimates) == len(full.estimates)
    for a, b in zip(full.estimates, inc.estimates, strict=True):
        assert (a.name, a.verdict, a.windows_judged, a.changed) == \
            (b.name, b.verdict, b.windows_judged, b.changed)
        for x, y in ((a.effect, b.effect), (a.lower, b.lower), (a.upper, b.upper),
                     (a.p_harm, b.p_harm), (a.n_baseline, b.n_baseline),
                     (a.n_canary, b.n_canary), (a.rel_effect, b.rel_effect)):
            assert (math.isnan(x) and math.isnan(y)) or x == pytest.approx(y, rel=1e-9,
                                                                          abs=1e-12)


@settings(max_examples=40, deadline=None)
@given(st.integers(0, 2**31), st.integers(6, 30), st.integers(1, 4),
       st.sampled_from([0.1, 0.095, 0.08, 0.11]), st.sampled_from([20.0, 300.0, 3000.0]))
def test_incremental_decisions_equal_the_full_recompute(seed: int, windows: int, segments: int,
                                                        p_b: float, n_b: float) -> None:
    """On random histories with steps, revisions of unfrozen rows and an SRM restart, the
    incremental assessor returns the full recompute's decision after every window."""
    rng = np.random.default_rng(seed)
    final = _draw_cells(rng, windows, segments, p_b, n_b)
    revised = _draw_cells(rng, windows, segments, p_b, n_b)  # what a row looked like early
    policy = RolloutPolicy(metrics=METRICS, step_windows=3, min_samples_per_stage=0,
                           stages=(0.05, 0.2, 0.5), min_final_windows=2)
    assessor = RolloutAssessor()
    stage, stage_start, srm_start = 0, 0, 0
    fractions = np.full(windows, 0.1)
    total = rng.poisson(10 * n_b * segments, windows)
    routed_b = rng.binomial(total, rng.choice([0.1, 0.1, 0.1, 0.13])).astype(float)
    for t in range(1, windows + 1):
        cells = {}
        for name, fields in final.items():
            cells[name] = {f: fields[f][:t].copy() for f in FIELDS}
            if t >= 2 and rng.random() < 0.5:  # the latest row is not final yet
                for f in ("sum_a", "sumsq_a", "sum_b", "sumsq_b"):
                    late = revised[name][f][t - 1]
                    n = cells[name][f"n_{f[-1]}"][t - 1]
                    cells[name][f][t - 1] = np.minimum(late, cells[name][f][t - 1]) \
                        if name != "latency_ms" else np.where(n > 0, late, 0.0)
        frac = fractions[:t].copy()
        frac[:srm_start] = np.nan
        assignment = {"n_a": (total - routed_b)[:t].astype(float), "n_b": routed_b[:t],
                      "fraction": frac}
        full = assess_rollout(policy, cells, assignment, stage, t - stage_start)
        inc = assessor.assess(policy, cells, assignment, stage, t - stage_start)
        _same(full, inc)
        if full.action in ("rollback", "promote"):
            break
        if full.action == "step":
            stage, stage_start, srm_start = full.stage, t, t
        if t == windows // 2:
            srm_start = t  # an operator's resume restarts the sample-ratio check


@settings(max_examples=25, deadline=None)
@given(st.integers(0, 2**31), st.integers(2, 15))
def test_incremental_coverage_and_drift_equal_the_full_recompute(seed: int, windows: int) -> None:
    """The label-coverage guard and the drift p-value agree with their vectorized forms."""
    rng = np.random.default_rng(seed)
    policy = RolloutPolicy(metrics=METRICS[:1])
    assessor = RolloutAssessor()
    shape = (windows, 2)
    exposures = {"n_a": rng.poisson(500, shape).astype(float),
                 "n_b": rng.poisson(50, shape).astype(float)}
    cover_b = rng.choice([0.5, 0.9])
    labelled = {"n_a": np.floor(exposures["n_a"] * 0.9),
                "n_b": np.floor(exposures["n_b"] * cover_b)}
    cells = {"conversion": {**{f: np.zeros(shape) for f in FIELDS},
                            "n_a": labelled["n_a"], "n_b": labelled["n_b"]}}
    hist_a = rng.poisson(20, (windows, 10)).astype(float)
    hist_b = rng.poisson(2, (windows, 10)).astype(float) * rng.choice([1, 2], 10)
    for t in range(1, windows + 1):
        assignment = {"n_a": exposures["n_a"][:t].sum(axis=1),
                      "n_b": exposures["n_b"][:t].sum(axis=1), "fraction": np.full(t, 0.1)}
        sub = {"conversion": {f: v[:t] for f, v in cells["conversion"].items()}}
        cov = {"conversion": Coverage({k: v[:t] for k, v in labelled.items()},
                                      {k: v[:t] for k, v in exposures.items()}, t)}
        _same(assess_rollout(policy, sub, assignment, 0, t, cov),
              assessor.assess(policy, sub, assignment, 0, t, cov))
        full_p = float(compute_drift(hist_a[:t], hist_b[:t]).p_value[-1])
        assert assessor.drift_p_value(hist_a[:t], hist_b[:t]) == pytest.approx(full_p, rel=1e-9)


def test_a_revised_row_is_refolded_and_an_unchanged_history_is_not() -> None:
    """Late labels in a row not yet frozen refold from that row; an unchanged row costs nothing."""
    rng = np.random.default_rng(3)
    cells = _draw_cells(rng, 8, 2, 0.1, 300.0)
    policy = RolloutPolicy(metrics=METRICS[:1])
    assessor = RolloutAssessor()
    n_a, n_b = cells["conversion"]["n_a"].sum(axis=1), cells["conversion"]["n_b"].sum(axis=1)
    assignment = {"n_a": n_a, "n_b": n_b, "fraction": n_b / (n_a + n_b)}
    sub = {"conversion": cells["conversion"]}
    assessor.assess(policy, sub, assignment, 0, 8)
    history = assessor.metrics["conversion"].whole
    assert history.refolded == 0
    assessor.assess(policy, sub, assignment, 0, 8)
    assert history.refolded == 0
    late = {f: v.copy() for f, v in cells["conversion"].items()}
    late["n_b"][6] += 5
    late["sum_b"][6] += 1
    late["sumsq_b"][6] += 1
    _same(assess_rollout(policy, {"conversion": late}, assignment, 0, 8),
          assessor.assess(policy, {"conversion": late}, assignment, 0, 8))
    assert history.refolded == 2


def test_bad_cells_give_an_error_verdict_naming_the_field() -> None:
    """A NaN in a new row is an ERROR (hold) naming the field, as in the full recompute."""
    rng = np.random.default_rng(4)
    cells = _draw_cells(rng, 4, 1, 0.1, 300.0)["conversion"]
    cells["sum_b"][3, 0] = np.nan
    assignment = {"n_a": cells["n_a"].sum(axis=1), "n_b": cells["n_b"].sum(axis=1),
                  "fraction": np.full(4, 0.1)}
    policy = RolloutPolicy(metrics=METRICS[:1])
    out = RolloutAssessor().assess(policy, {"conversion": cells}, assignment, 0, 4)
    assert out.action == "hold" and "sum_b" in out.message
