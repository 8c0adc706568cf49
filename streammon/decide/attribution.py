"""Attribution horizons of a spec's metrics: the default, the judge delay, the check.

Every guarded metric is judged once, then frozen (:mod:`streammon.stats.horizon`): a
window's cohort is judged at the first decision at least ``horizon_ms`` after the window
ends, and nothing judged is ever revised. The horizon a metric gets:

* its own ``horizon_ms`` when the spec sets one;
* ``0`` for a prediction-time metric (``latency_ms``, ``error``, ``timeout``): the
  prediction carries it, so its cohort is complete when the window closes (plus
  ``grace_ms``, after which the join drops late predictions);
* for an outcome metric (``label``, ``value``) ``max(1, label_delay_windows)`` windows
  (:data:`~streammon.events.SpecDefaults.OUTCOME_HORIZON_WINDOWS`): every prediction gets
  at least one whole window plus ``grace_ms`` for its outcome, and a spec written with
  the older ``label_delay_windows`` keeps its judge time (now frozen).

Label coverage per arm is guarded on every outcome metric's judged cohorts
(:func:`streammon.decide.progress.freeze_judged`). Pure: no I/O.
"""

from __future__ import annotations

from streammon.errors import ConfigError
from streammon.events import PREDICTION_METRICS, MetricSpecWire, RolloutSpec, SpecDefaults
from streammon.stats.horizon import horizon_windows


def is_prediction_time(metric: MetricSpecWire) -> bool:
    """Return True for a metric the prediction itself carries (known before any outcome)."""
    return metric.name in PREDICTION_METRICS


def horizon_ms_of(spec: RolloutSpec, metric: MetricSpecWire) -> int:
    """Return the metric's attribution horizon: its own, else 0 or the outcome default."""
    if metric.horizon_ms is not None:
        return metric.horizon_ms
    if is_prediction_time(metric):
        return 0
    windows = max(SpecDefaults.OUTCOME_HORIZON_WINDOWS, metric.label_delay_windows)
    return windows * spec.window_ms


def judge_delay_windows(spec: RolloutSpec, metric: MetricSpecWire) -> int:
    """Return how many windows after its own a metric's cohort is judged (then frozen)."""
    return max(metric.label_delay_windows,
               horizon_windows(horizon_ms_of(spec, metric), spec.window_ms))


def check_horizons(spec: RolloutSpec) -> None:
    """Raise ConfigError naming ``metrics[i].horizon_ms`` for a horizon the join cannot honour.

    The join forgets a waiting prediction ``ttl_ms`` after it arrived, so an outcome
    later than ``ttl_ms`` never counts: a longer horizon would only delay every decision.
    """
    for i, metric in enumerate(spec.metrics):
        if metric.horizon_ms is not None and metric.horizon_ms > spec.ttl_ms:
            raise ConfigError(
                f"rollout spec {spec.rollout_id!r}: metrics[{i}].horizon_ms "
                f"({metric.horizon_ms}) exceeds ttl_ms ({spec.ttl_ms}): the join drops "
                "outcomes later than ttl_ms; shorten the horizon or raise ttl_ms")
