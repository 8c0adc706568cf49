# ruff: noqa: RUF002  (formulas use Greek letters and math signs)
"""Latency on its upper tail: an exceedance test at a threshold fixed at rollout start.

A ``latency_ms`` metric with ``"quantile": q`` (e.g. 0.95) is judged on the share of
requests slower than a threshold τ, not on the mean. The join counts every request's
latency in a fixed log grid of bins (:data:`streammon.join.cells.LATENCY_BINS`, ten per
decade). On the first window in which the baseline has :data:`TAIL_MIN_N` requests the
decider fixes τ at the lowest bin edge with at least a share q of the baseline below it
(the baseline's q-quantile, rounded up on the grid) and stores it with the rollout; that
calibration window and the ones before it are left out of the test, so τ is a constant
of the windows judged (a predictable threshold keeps the test anytime-valid).

Each unit is then a Bernoulli draw — its first request slower than τ or not — in its
(window, segment) cell (a request without a ``unit_id`` is its own unit; the join bins a
unit's first latency only, so a sticky user's correlated requests count once), and
the matched-cohort mixture SPRT of :mod:`streammon.stats.meandiff` (Howard et al. 2021,
Props. 4–5; Johari et al. 2017) judges ``Δ = P_canary(X > τ) − P_baseline(X > τ)``,
harmful when positive: if the canary's q-quantile is above τ, its exceedance share
is above 1 − q while the baseline's stays near it. The margin is a share of requests.
This is the binned-distribution form of a sequential quantile test (Howard & Ramdas
2022, "Sequential estimation of quantiles with applications to A/B-testing and
best-arm identification", Bernoulli 28(3), which test quantiles through exceedance
indicators at fixed thresholds). Pure functions of numpy arrays.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np

from streammon.errors import ConfigError
from streammon.events import RolloutSpec
from streammon.join.cells import LATENCY_BINS, latency_bin_metric
from streammon.stats.cells import FIELDS, FloatArray

TAIL_MIN_N = 200
"""Baseline requests the calibration window needs before τ is fixed."""
BIN_METRICS = tuple(latency_bin_metric(k) for k in range(LATENCY_BINS))


def check_quantiles(spec: RolloutSpec) -> None:
    """Raise ConfigError naming ``metrics[i].quantile`` or its margin when they cannot run."""
    for i, metric in enumerate(spec.metrics):
        q = metric.quantile
        if q is None:
            continue
        where = f"rollout spec {spec.rollout_id!r}: metrics[{i}]"
        if metric.name != "latency_ms":
            raise ConfigError(f"{where}.quantile is only for latency_ms (got {metric.name!r});"
                              " remove it")
        if not 0.5 <= q < 1.0:
            raise ConfigError(f"{where}.quantile={q!r} must be in [0.5, 1), e.g. 0.95 or 0.99")
        if metric.bad_direction != "increase":
            raise ConfigError(f'{where}.bad_direction must be "increase" with a quantile')
        if not 0.0 <= metric.margin < 1.0 - q:
            raise ConfigError(
                f"{where}.margin={metric.margin!r} is a share of requests with a quantile: "
                f"use a value in [0, {1.0 - q:.3g}), e.g. {(1.0 - q) / 5:.2g}")


def calibrate(bins_a: FloatArray, quantile: float) -> tuple[int, int] | None:
    """Return (calibration window, first bin above τ), or None before enough data.

    ``bins_a`` holds the baseline's counts per window and latency bin, ``(windows, bins)``.
    """
    totals = bins_a.sum(axis=1)
    ready = np.flatnonzero(totals >= TAIL_MIN_N)
    if ready.size == 0:
        return None
    window = int(ready[0])
    below = np.cumsum(bins_a[window]) / totals[window]
    first_above = int(np.searchsorted(below, quantile - 1e-12) + 1)
    return window, min(first_above, bins_a.shape[1] - 1)


def exceedance_cells(cells: Mapping[str, Mapping[str, FloatArray]], calibration: int,
                     first_above: int) -> dict[str, FloatArray]:
    """Return binary cells ``n`` = requests, ``sum`` = requests in bins ≥ ``first_above``.

    Windows up to ``calibration`` are empty (they fixed τ). ``cells`` maps the bin
    metrics of :data:`BIN_METRICS` to their grid cells.
    """
    out: dict[str, FloatArray] = {}
    for arm in ("a", "b"):
        counts = np.stack([np.asarray(cells[m][f"n_{arm}"], dtype=np.float64)
                           for m in BIN_METRICS], axis=-1)
        n = counts.sum(axis=-1)
        slow = counts[..., first_above:].sum(axis=-1)
        n[:calibration + 1] = 0.0
        slow[:calibration + 1] = 0.0
        out[f"n_{arm}"], out[f"sum_{arm}"], out[f"sumsq_{arm}"] = n, slow, slow.copy()
    return {f: out[f] for f in FIELDS}
