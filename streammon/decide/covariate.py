# ruff: noqa: RUF002  (formulas use Greek letters and math signs)
"""Outcome metrics judged with a pre-exposure covariate (CUPED), laid out for the decider.

A ``label`` or ``value`` metric with ``"covariate": true`` is judged on the adjusted
outcome ``y − θ_t (x − m_t)`` of :mod:`streammon.stats.cuped`, where x is the
predictions' ``covariate`` (the baseline model's score on every request, or the unit's
pre-rollout metric). The join keeps, per cell, ``<metric>:x`` (n, Σx, Σx²) and
``<metric>:xy`` (n, Σxy, Σ(xy)²) over the joined outcomes with a covariate; a request
without one counts as x = 0, so its arm must not decide whether it has one.
"""

from __future__ import annotations

from collections.abc import Mapping

from streammon.errors import ConfigError
from streammon.events import RolloutSpec
from streammon.join.cells import covariate_metric
from streammon.stats.cells import FloatArray, as_cells
from streammon.stats.cuped import Covariate, adjust_cells

COVARIATE_METRICS = ("label", "value")


def check_covariates(spec: RolloutSpec) -> None:
    """Raise ConfigError naming ``metrics[i].covariate`` when it is set on a metric without one."""
    for i, metric in enumerate(spec.metrics):
        if metric.covariate and metric.name not in COVARIATE_METRICS:
            raise ConfigError(
                f"rollout spec {spec.rollout_id!r}: metrics[{i}].covariate is for outcome "
                f"metrics {COVARIATE_METRICS}, not {metric.name!r}; remove it")


def covariate_names(spec: RolloutSpec) -> list[str]:
    """Return the cell metrics the grid needs for the spec's covariate-adjusted metrics."""
    return [covariate_metric(m.name, part) for m in spec.metrics if m.covariate
            for part in ("x", "xy")]


def adjusted(cells: Mapping[str, Mapping[str, FloatArray]], name: str,
             kind: str) -> dict[str, FloatArray]:
    """Return metric ``name``'s cells adjusted by its covariate sums (a continuous metric)."""
    x, xy = cells[covariate_metric(name, "x")], cells[covariate_metric(name, "xy")]
    cov = Covariate(sum_x_a=x["sum_a"], sumsq_x_a=x["sumsq_a"], sum_xy_a=xy["sum_a"],
                    sum_x_b=x["sum_b"], sumsq_x_b=x["sumsq_b"], sum_xy_b=xy["sum_b"])
    return adjust_cells(as_cells(cells[name], kind), cov).to_dict()
