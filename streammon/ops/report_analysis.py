"""The analysis behind ``streammon report``: pure computations over one rollout's events.

:func:`analyse` turns a rollout's summaries, commands and diagnoses into a
:class:`RolloutAnalysis`, reusing the decider's own cell layout
(:mod:`streammon.ops.rollout_grid`): per-segment confidence sequences, the sample-ratio
check and prediction drift. :mod:`streammon.ops.report_charts` draws it.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from streammon import events
from streammon.control.commands import PHASES
from streammon.decide import attribution, cell_grid
from streammon.events import CohortSummary, Command, Diagnosis
from streammon.ops.rollout_grid import SrmCheck, rollout_grid, srm_check
from streammon.stats import as_cells, compute_drift, compute_sequence


@dataclass(frozen=True)
class MetricSeries:
    """One metric's estimate after every assessed window, against seconds since start."""

    name: str
    bad_direction: str
    margin: float
    t_s: list[float]
    effect: list[float]
    lower: list[float]
    upper: list[float]
    verdicts: list[str]


@dataclass(frozen=True)
class SegmentEffect:
    """One metric's within-segment estimate and confidence sequence after the last window."""

    metric: str
    segment: str
    effect: float
    lower: float
    upper: float
    n_baseline: int
    n_canary: int
    harm: bool


@dataclass(frozen=True)
class DriftCheck:
    """Prediction drift between the arms' score histograms (``windows == 0``: no scores)."""

    p_value: float
    alpha: float
    shown: bool
    windows: int


@dataclass(frozen=True, kw_only=True)
class RolloutAnalysis:
    """Everything the report shows, computed without I/O; times are seconds since start."""

    rollout_id: str
    baseline: str
    candidate: str
    phase: str
    spec: events.RolloutSpec
    metric_alpha: float
    t0_ms: int
    window_ms: int
    commands: list[Command]
    diagnoses: list[Diagnosis]
    metrics: list[MetricSeries]
    segments: list[SegmentEffect]
    window_t_s: list[float]
    observed_fraction: list[float]
    srm: SrmCheck
    score_hist: dict[str, list[int]]
    drift: DriftCheck

    @property
    def final_diagnosis(self) -> Diagnosis | None:
        """The last assessed window's diagnosis (the decisive one after a rollback)."""
        return self.diagnoses[-1] if self.diagnoses else None


def analyse(rollout_id: str, summaries: list[CohortSummary], commands: list[Command],
            diagnoses: list[Diagnosis]) -> RolloutAnalysis:
    """Compute the report's numbers and words; raise ConfigError without a start command."""
    rollout = rollout_grid(rollout_id, summaries, commands, diagnoses)
    spec, windows, state, grid, policy = (rollout.spec, rollout.windows, rollout.state,
                                          rollout.grid, rollout.policy)
    t0 = rollout.start.ts_ms
    hist, drift = _drift(grid, spec.alpha)
    return RolloutAnalysis(
        rollout_id=rollout_id, baseline=spec.baseline, candidate=spec.candidate,
        phase=_phase(commands), spec=spec, metric_alpha=policy.metric_alpha, t0_ms=t0,
        window_ms=spec.window_ms, commands=commands, diagnoses=diagnoses,
        metrics=[_series(m, diagnoses, t0, spec.window_ms) for m in spec.metrics],
        segments=_segments(state.spec, grid, windows, policy.metric_alpha),
        window_t_s=[(state.origin_ms + (w + 1) * spec.window_ms - t0) / 1000
                    for w in range(windows)],
        observed_fraction=_observed(grid.cells, windows),
        srm=srm_check(grid.assignment, policy.srm_alpha),
        score_hist=hist, drift=drift)


def _phase(commands: list[Command]) -> str:
    final = next((c for c in reversed(commands) if PHASES[c.action] != "running"), None)
    return "running" if final is None else PHASES[final.action]


def _series(m: events.MetricSpecWire, diagnoses: list[Diagnosis], t0_ms: int,
            window_ms: int) -> MetricSeries:
    rows = [(d, e) for d in diagnoses for e in d.metrics if e.name == m.name]
    return MetricSeries(
        name=m.name, bad_direction=m.bad_direction, margin=m.margin,
        t_s=[(d.window_start_ms + window_ms - t0_ms) / 1000 for d, _ in rows],
        effect=[e.effect for _, e in rows], lower=[e.lower for _, e in rows],
        upper=[e.upper for _, e in rows], verdicts=[e.verdict for _, e in rows])


def _segments(spec: events.RolloutSpec, grid: cell_grid.Grid, windows: int,
              alpha: float) -> list[SegmentEffect]:
    """Run each metric's sequential test within each segment (the decider's per-metric alpha)."""
    out = []
    for m in spec.metrics:
        judged = windows - attribution.judge_delay_windows(spec, m)
        for j, segment in enumerate(grid.segments if judged > 0 else ()):
            sub = {f: a[:judged, j:j + 1] for f, a in grid.cells[m.name].items()}
            if sub["n_b"].sum() == 0 or sub["n_a"].sum() == 0:
                continue
            r = compute_sequence(as_cells(sub, m.kind), kind=m.kind,
                                 bad_direction=m.bad_direction, alpha=alpha, margin=m.margin)
            out.append(SegmentEffect(m.name, segment, float(r.effect[-1]), float(r.lower[-1]),
                                     float(r.upper[-1]), int(r.n_a[-1]), int(r.n_b[-1]),
                                     bool(r.harm.any())))
    return out


def _observed(cells: dict[str, dict[str, np.ndarray]], windows: int) -> list[float]:
    """Canary share of each window's requests (of the first metric's observations)."""
    if not cells or windows == 0:
        return []
    first = next(iter(cells.values()))
    n_a, n_b = first["n_a"].sum(axis=1), first["n_b"].sum(axis=1)
    total = n_a + n_b
    return [float(b / t) if t else float("nan") for b, t in zip(n_b, total, strict=True)]


def _drift(grid: cell_grid.Grid, alpha: float) -> tuple[dict[str, list[int]], DriftCheck]:
    totals = {"baseline": [int(x) for x in grid.hist_a.sum(axis=0)],
              "canary": [int(x) for x in grid.hist_b.sum(axis=0)]}
    if not all(sum(t) for t in totals.values()):
        return totals, DriftCheck(1.0, alpha, False, 0)
    result = compute_drift(grid.hist_a, grid.hist_b, alpha=alpha)
    windows = int(grid.hist_a.shape[0])
    return totals, DriftCheck(float(result.p_value[-1]), alpha, bool(result.drift[-1]), windows)
