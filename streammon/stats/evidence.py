# ruff: noqa: RUF002  (formulas use Greek letters and math signs)
"""One metric's evidence for the decider, with α spent the way the docs promise.

α means what the seed's 95% interval means (``docs/statistics.md``, "α across a
rollout"):

* **Shown bounds** are a two-sided confidence sequence at 1 − α: each side is a
  one-sided sequence at α/2 (running intersection, Howard et al. 2021).
* **Rollback** (false rollback ≤ α/2 over the whole rollout): the metrics' harm
  e-processes ``M_i,t`` (each a nonnegative supermartingale under "no harm") are
  *averaged*, ``Ē_t = (1/M) Σ_i M_i,t``, itself a nonnegative supermartingale, and the
  rollout rolls back when ``max_{s≤t} Ē_s ≥ 1/α_r`` (Ville). The average rejects
  whenever the Bonferroni split would (``M_i ≥ M/α_r`` implies ``Ē ≥ 1/α_r``) and also
  when several metrics lean the same way (Vovk & Wang 2021, "E-values: calibration,
  combination and applications", Ann. Statist. 49(3), Prop. 3.1: the arithmetic mean
  is the admissible symmetric merging function of e-values).
* **Promotion** (false promotion ≤ α/2): an intersection–union test (Berger 1982,
  Technometrics 24(4)) — every metric must show non-inferiority, each at the full α/2,
  on a confidence sequence that starts afresh at the current stage, so evidence from
  earlier stages (an effect that has since changed, e.g. novelty) never promotes. Its
  mixture scale is at least the margin (a constant of the spec), so a rare metric with
  a wide margin is not judged by a boundary tuned to 5% relative effects.
* **Crossed bounds.** When the whole-rollout running intersection is empty (lower >
  upper), the effect changed during the rollout: no constant effect is consistent with
  the data. The decider holds with that reason, and the bounds shown are those of the
  current stage, never crossed ones.

Pure functions of numpy arrays.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np
from scipy import special

from streammon.stats.cells import Cells, FloatArray, StatsInputError, as_cells
from streammon.stats.sequence import compute_sequence


@dataclass(frozen=True)
class MetricEvidence:
    """One metric after the latest decision: bounds to show, harm e-values, stage check."""

    effect: float
    relative: float
    lower: float
    upper: float
    crossed: bool
    stage_noninferior: bool
    log_e_harm: FloatArray
    """log harm e-value at every decision so far (0 before the first judged window)."""
    p_harm: float
    n_a: float
    n_b: float
    windows_judged: int


def assess_metric_evidence(cells: Mapping[str, object], *, kind: str, bad_direction: str,
                           margin: float, label_delay_windows: int, alpha: float,
                           stage_start: int) -> MetricEvidence:
    """Return the metric's evidence after the last window of ``cells``.

    ``stage_start`` is the first window of the current stage; ``alpha`` the rollout's α
    (shown bounds at 1 − α two-sided; stage non-inferiority at α/2).
    """
    data = as_cells(cells, kind)
    if data.n_a.ndim != 2:
        raise StatsInputError(f"metric cells must be (windows, segments), got {data.shape}")
    decisions = data.shape[0]
    judged = decisions - label_delay_windows
    log_e = np.zeros(decisions)
    if judged <= 0:
        nan = float("nan")
        return MetricEvidence(nan, nan, -np.inf, np.inf, False, False, log_e, 1.0, 0.0, 0.0, 0)
    half = alpha / 2.0
    whole = compute_sequence(data.head(judged), kind=kind, bad_direction=bad_direction,
                             alpha=half, margin=margin)
    assert whole.log_e_harm is not None
    log_e[label_delay_windows:] = np.nan_to_num(whole.log_e_harm, nan=0.0, neginf=-700.0)
    lower, upper = float(whole.lower[-1]), float(whole.upper[-1])
    stage_ok, stage_low, stage_up, stage_effect = _stage_check(
        data, stage_start, judged, kind=kind, bad_direction=bad_direction, margin=margin,
        alpha=half)
    effect = float(whole.effect[-1])
    crossed = lower > upper
    if crossed:  # the effect changed: show the current stage's estimate and its bounds
        lower, upper, effect = stage_low, stage_up, stage_effect
    return MetricEvidence(
        effect=effect, relative=float(whole.relative[-1]), lower=lower,
        upper=upper, crossed=crossed, stage_noninferior=stage_ok, log_e_harm=log_e,
        p_harm=float(whole.p_harm[-1]), n_a=float(whole.n_a[-1]), n_b=float(whole.n_b[-1]),
        windows_judged=judged)


def _stage_check(data: Cells, stage_start: int, judged: int, *, kind: str, bad_direction: str,
                 margin: float, alpha: float) -> tuple[bool, float, float, float]:
    """Return (non-inferior, lower, upper, effect) of a sequence over the stage's windows."""
    start = max(stage_start, 0)
    if judged <= start:
        return False, -np.inf, np.inf, float("nan")
    stage = Cells(*(getattr(data, f)[start:judged] for f in
                    ("n_a", "sum_a", "sumsq_a", "n_b", "sum_b", "sumsq_b")))
    result = compute_sequence(stage, kind=kind, bad_direction=bad_direction, alpha=alpha,
                              margin=margin, tau_min=margin)
    low, up = float(result.lower[-1]), float(result.upper[-1])
    return bool(result.noninferior[-1]) and low <= up, low, up, float(result.effect[-1])


def log_weights(weights: Sequence[float] | None, count: int) -> FloatArray:
    """Return ``log(w_i / Σ_j w_j)``: the averaging weights, equal (1/M) when None.

    Weights must be fixed before the rollout (they are part of its spec): a convex
    combination of e-values with weights fixed in advance is an e-value, and of test
    supermartingales a test supermartingale (Vovk & Wang 2021, "E-values: calibration,
    combination and applications", Ann. Statist. 49(3), Sec. 3: weighted arithmetic means).
    """
    if weights is None:
        return np.full(count, -np.log(count))
    w = np.asarray(weights, dtype=np.float64)
    if w.shape != (count,) or not np.all(np.isfinite(w)) or not np.all(w > 0):
        raise StatsInputError(f"weights must be {count} finite numbers > 0, got {weights}")
    return np.asarray(np.log(w / w.sum()), dtype=np.float64)


def log_mean_e(log_es: Sequence[FloatArray],
               weights: Sequence[float] | None = None) -> FloatArray:
    """Return ``log(Σ_i w_i exp(log_e_i) / Σ_i w_i)`` elementwise (the averaged e-process).

    Equal weights (None) give the plain average ``(1/M) Σ_i M_i``.
    """
    if not log_es:
        raise StatsInputError("need at least one metric's e-values to average")
    stacked = np.stack([np.asarray(e, dtype=np.float64) for e in log_es])
    shift = log_weights(weights, len(log_es)).reshape((-1,) + (1,) * (stacked.ndim - 1))
    return np.asarray(special.logsumexp(stacked + shift, axis=0), dtype=np.float64)


def averaged_harm(log_es: Sequence[FloatArray], alpha_rollback: float,
                  weights: Sequence[float] | None = None) -> tuple[bool, float]:
    """Return (roll back?, running p-value) of the (weighted) averaged harm e-process.

    Rolls back when ``max_{s≤t} Ē_s ≥ 1/alpha_rollback``; the p-value is
    ``min(1, 1/max_{s≤t} Ē_s)``.
    """
    peak = float(np.max(log_mean_e(log_es, weights)))
    return peak >= float(np.log(1.0 / alpha_rollback)), float(min(1.0, np.exp(-peak)))
