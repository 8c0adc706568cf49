"""Cohort summaries laid out as the arrays the statistics take.

The decider holds the latest cumulative summary of every (window, segment, arm, source)
cell. :func:`build_grid` adds the sources of each cell together and lays the result out
per metric as ``(windows, segments)`` arrays — ``n_a, sum_a, sumsq_a`` for the baseline,
``n_b, sum_b, sumsq_b`` for the canary — exactly what :func:`streammon.stats.replay` and
:func:`streammon.decide.policy.assess_rollout` take, plus per-window score histograms per arm
and the assignment counts of the sample-ratio check. Cells are never pooled across
windows or segments here; the layout is :mod:`streammon.events`' (``SUMS``, ``ARM_CODES``).
Pure.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

import numpy as np

from streammon.events import ARM_CODES, SCORE_BINS, CohortSummary
from streammon.stats.cells import FIELDS, FloatArray

EXPOSURE_METRIC = "error"
"""Every prediction records its error flag, so this metric's n counts exposures."""


@dataclass(frozen=True)
class Grid:
    """Per-window arrays of one rollout: metric cells, score histograms, assignment."""

    cells: dict[str, dict[str, FloatArray]]
    hist_a: FloatArray
    hist_b: FloatArray
    assignment: dict[str, FloatArray]
    segments: tuple[str, ...]
    exposures: dict[str, FloatArray] = field(default_factory=dict)
    """Predictions per (window, segment): ``n_a`` and ``n_b`` (for the coverage guard)."""


def build_grid(
    summaries: Iterable[CohortSummary], *, origin_ms: int, window_ms: int, windows: int,
    metrics: Sequence[str], intended: FloatArray,
) -> Grid:
    """Return the grid of the first ``windows`` decision windows after ``origin_ms``.

    ``intended`` is the canary's intended share per window; NaN marks a window in which the
    split changed, which the sample-ratio check leaves out.
    """
    rows = [s for s in summaries
            if origin_ms <= s.window_start_ms < origin_ms + windows * window_ms]
    segments = tuple(sorted({s.segment for s in rows})) or ("all",)
    seg_index = {s: i for i, s in enumerate(segments)}
    names = [*metrics, EXPOSURE_METRIC] if EXPOSURE_METRIC not in metrics else list(metrics)
    cells = {m: {f: np.zeros((windows, len(segments))) for f in FIELDS} for m in names}
    hists = {"a": np.zeros((windows, SCORE_BINS)), "b": np.zeros((windows, SCORE_BINS))}
    for s in rows:
        w = (s.window_start_ms - origin_ms) // window_ms
        arm = ARM_CODES[s.arm]
        hists[arm][w] += s.score_hist
        for metric, sums in s.metrics.items():
            if metric in cells:
                at = (w, seg_index[s.segment])
                cells[metric][f"n_{arm}"][at] += sums.n
                cells[metric][f"sum_{arm}"][at] += sums.sum
                cells[metric][f"sumsq_{arm}"][at] += sums.sumsq
    exposures = cells[EXPOSURE_METRIC]
    assignment = {"n_a": exposures["n_a"].sum(axis=1), "n_b": exposures["n_b"].sum(axis=1),
                  "fraction": intended}
    return Grid({m: cells[m] for m in metrics}, hists["a"], hists["b"], assignment, segments,
                {"n_a": exposures["n_a"], "n_b": exposures["n_b"]})
