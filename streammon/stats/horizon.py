# ruff: noqa: RUF002  (formulas use Greek letters and math signs)
"""Attribution horizon, judge-once freezing, and the per-arm label-coverage guard.

A metric with ``horizon_ms`` counts an outcome for a prediction made in window ``w`` when
it has arrived by the time cohort ``w`` is judged: at the first decision whose window
ends at least ``horizon_ms`` after window ``w`` ends, i.e. ``d = ⌈horizon_ms /
window_ms⌉`` windows later (:func:`horizon_windows`). The cohort's cells are then
**frozen** (:func:`freeze_rows`): later decisions read the stored values, so late labels
never revise a judged cohort and the path the sequential test watches is one
supermartingale.

Label coverage — outcomes joined per prediction — is compared between the arms on the
judged cohorts (:func:`compute_coverage_gap`): a two-sided matched-cohort mixture test
(:mod:`streammon.stats.meandiff`) on the binary "labelled" indicator. Arm-dependent
missing labels hold the rollout with that reason instead of biasing it silently.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np

from streammon.stats.cells import FIELDS, Cells, FloatArray, StatsInputError
from streammon.stats.sequence import compute_sequence

FrozenStore = dict[str, dict[str, list[float]]]
"""window index (as text, for JSON) -> segment -> the six cell fields."""


def horizon_windows(horizon_ms: int | None, window_ms: int) -> int:
    """Return how many windows after its own a cohort is judged: ``⌈horizon_ms/window_ms⌉``."""
    if horizon_ms is None:
        return 0
    if horizon_ms < 0 or window_ms <= 0:
        raise StatsInputError("horizon_ms must be >= 0 and window_ms > 0")
    return math.ceil(horizon_ms / window_ms)


def freeze_rows(store: FrozenStore, cells: Mapping[str, FloatArray],
                segments: tuple[str, ...], through: int) -> dict[str, FloatArray]:
    """Return ``cells`` with windows ``0..through`` read from ``store`` (filled on first use).

    A window judged for the first time is copied into ``store``; one judged before is
    replaced by its stored values, whatever arrived since. Segments first seen after a
    window was frozen are zero in it.
    """
    out = {f: np.array(cells[f], dtype=np.float64, copy=True) for f in FIELDS}
    rows = max(through + 1, 0)
    for w in range(len(store), rows):  # windows are frozen in order: only new ones copy
        if str(w) not in store:
            store[str(w)] = {seg: [float(out[f][w, j]) for f in FIELDS]
                             for j, seg in enumerate(segments)}
    if rows == 0 or not segments:
        return out
    zero = [0.0] * len(FIELDS)
    stored = np.array([[store[str(w)].get(seg, zero) for seg in segments] for w in range(rows)],
                      dtype=np.float64)
    for k, f in enumerate(FIELDS):
        out[f][:rows] = stored[:, :, k]
    return out


@dataclass(frozen=True)
class CoverageGap:
    """Whether label coverage differs between the arms, and the two coverage rates."""

    differs: bool
    baseline: float
    canary: float


def compute_coverage_gap(labelled: Mapping[str, FloatArray], exposures: Mapping[str, FloatArray],
                         judged: int, alpha: float) -> CoverageGap:
    """Test labelled/predictions between arms on the first ``judged`` windows, two-sided.

    ``labelled`` and ``exposures`` hold ``n_a``/``n_b`` arrays ``(windows, segments)``: the
    metric's joined outcomes and the predictions per cell. Each side is tested at α/2.
    """
    if judged <= 0:
        return CoverageGap(False, float("nan"), float("nan"))
    n_a = np.asarray(exposures["n_a"], dtype=np.float64)[:judged]
    n_b = np.asarray(exposures["n_b"], dtype=np.float64)[:judged]
    lab_a = np.minimum(np.asarray(labelled["n_a"], dtype=np.float64)[:judged], n_a)
    lab_b = np.minimum(np.asarray(labelled["n_b"], dtype=np.float64)[:judged], n_b)
    cells = Cells(n_a, lab_a, lab_a, n_b, lab_b, lab_b)
    differs = False
    for side in ("decrease", "increase"):
        result = compute_sequence(cells, kind="binary", bad_direction=side, alpha=alpha / 2)
        differs = differs or bool(result.harm[-1])
    rate_a = float(lab_a.sum() / n_a.sum()) if n_a.sum() > 0 else float("nan")
    rate_b = float(lab_b.sum() / n_b.sum()) if n_b.sum() > 0 else float("nan")
    return CoverageGap(differs, rate_a, rate_b)
