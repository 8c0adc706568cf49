
"""The decider's incremental state: the same decision as ``assess_rollout``, O(1) per window.

:func:`streammon.decide.policy.assess_rollout` recomputes every test over the whole history
after each window. :class:`RolloutAssessor` keeps, per rollout, one
:class:`streammon.stats.incremental.History` per test — each metric's whole-rollout
sequence and its current-stage sequence, the sample-ratio check, the label-coverage
guards and the drift test — and folds only the windows that are new (or were revised
before they were frozen). The rules it applies are the policy's own
(:func:`streammon.decide.policy.judge`), so both paths decide alike; ``tests/property``
compares them on random cell histories with late revisions.

The assessor lives in memory. After a restart it is rebuilt by folding the cells the
decider rebuilt from the cohort topic (judged cohorts of metrics with a horizon come from
the frozen store in the rollout's state), one O(windows) catch-up, then O(1) again.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

import numpy as np

from streammon.decide.policy import (
    Assessment,
    Coverage,
    MetricSpec,
    RolloutPolicy,
    check_metrics,
    coverage_halt,
    judge,
    pending,
    srm_halt,
)
from streammon.events import Verdict
from streammon.stats.assignment import check_assignment
from streammon.stats.cells import FIELDS, FloatArray, StatsInputError, as_cells
from streammon.stats.evidence import MetricEvidence
from streammon.stats.horizon import CoverageGap
from streammon.stats.incremental import (
    DriftTracker,
    History,
    MeanDiffTracker,
    Point,
    RateTracker,
    SrmTracker,
    stack_rows,
    with_margin,
)

_LOG_E_FLOOR = -700.0


def _tracker(spec: MetricSpec, alpha: float) -> MeanDiffTracker | RateTracker:
    if spec.kind == "count":
        return RateTracker(spec.bad_direction, alpha, spec.margin)
    return MeanDiffTracker(spec.kind, spec.bad_direction, alpha, spec.margin)


def _stage_tracker(spec: MetricSpec, alpha: float) -> MeanDiffTracker | RateTracker:
    tracker = _tracker(spec, alpha)
    if isinstance(tracker, MeanDiffTracker):
        return with_margin(tracker, spec.margin)
    return tracker


@dataclass
class _MetricMemory:
    """One metric's whole-rollout and current-stage histories."""

    whole: History
    stage: History
    stage_start: int = -1


@dataclass
class _CoverageMemory:
    """One outcome metric's label-coverage guard: a two-sided test as two one-sided ones."""

    sides: tuple[History, History]


@dataclass
class RolloutAssessor:
    """Incremental decision state of one rollout (see the module docstring)."""

    policy: RolloutPolicy | None = None
    metrics: dict[str, _MetricMemory] = field(default_factory=dict)
    coverage: dict[str, _CoverageMemory] = field(default_factory=dict)
    srm: History | None = None
    drift: History | None = None
    log_mean_e: list[float] = field(default_factory=list)
    """log of the averaged harm e-value at every decision so far."""
    peaks: list[float] = field(default_factory=list)

    def assess(self, policy: RolloutPolicy, cells_by_metric: Mapping[str, Mapping[str, object]],
               assignment: Mapping[str, object], stage: int, windows_in_stage: int,
               coverage: Mapping[str, Coverage] | None = None) -> Assessment:
        """Decide after the latest closed window, as :func:`assess_rollout` does."""
        try:
            return self._assess(policy, cells_by_metric, assignment, stage, windows_in_stage,
                                coverage or {})
        except (ValueError, KeyError, TypeError, FloatingPointError) as exc:
            return Assessment(Verdict.ERROR, "hold", policy.fraction_at(stage), stage, (),
                              float("nan"), f"{type(exc).__name__}: {exc}")

    def drift_p_value(self, hist_a: FloatArray, hist_b: FloatArray) -> float:
        """Return the running p-value of score drift between the arms (1.0 without scores)."""
        if self.drift is None:
            self.drift = History(DriftTracker())
        rows = np.stack([np.asarray(hist_a, np.float64), np.asarray(hist_b, np.float64)], axis=1)
        if rows.shape[0] == 0:
            return 1.0
        self.drift.sync(rows)
        if not _any_scores(self.drift):
            return 1.0
        last = self.drift.last
        return 1.0 if last is None else last.p_harm

    def _reset(self, policy: RolloutPolicy) -> None:
        self.policy = policy
        self.metrics = {m.name: _MetricMemory(History(_tracker(m, policy.metric_alpha)),
                                              History(_stage_tracker(m, policy.metric_alpha)))
                        for m in policy.metrics}
        self.coverage = {}
        self.srm = History(SrmTracker(policy.srm_alpha))
        self.log_mean_e, self.peaks = [], []

    def _assess(self, policy: RolloutPolicy, cells_by_metric: Mapping[str, Mapping[str, object]],
                assignment: Mapping[str, object], stage: int, windows_in_stage: int,
                coverage: Mapping[str, Coverage]) -> Assessment:
        if policy != self.policy:
            self._reset(policy)
        n_a, n_b, fraction = check_assignment(assignment)
        if n_b.size == 0:
            return pending(policy, stage)
        srm = self._srm(policy, n_a, n_b, fraction)
        if srm.harm:
            return srm_halt(policy, stage, srm.p_harm)
        for name, cov in coverage.items():
            gap = self._coverage_gap(policy, name, cov)
            if gap.differs:
                return coverage_halt(policy, stage, srm.p_harm, name, gap)
        check_metrics(policy, cells_by_metric)
        decisions = n_b.size
        stage_start = decisions - windows_in_stage
        changed = decisions
        evidence = []
        for spec in policy.metrics:
            first, item = self._metric(spec, cells_by_metric[spec.name], decisions, stage_start)
            changed = min(changed, first + spec.label_delay_windows)
            evidence.append(item)
        harm, p_harm = self._averaged_harm(policy, decisions, changed)
        return judge(policy, evidence, harm, p_harm, n_b, stage, windows_in_stage, srm.p_harm)

    def _srm(self, policy: RolloutPolicy, n_a: FloatArray, n_b: FloatArray,
             fraction: FloatArray) -> Point:
        assert self.srm is not None
        steady = np.isfinite(fraction)
        if np.any(steady & ((fraction <= 0.0) | (fraction >= 1.0))):
            raise StatsInputError("fraction must lie strictly between 0 and 1 in every window")
        if not (np.all(np.isfinite(n_a)) and np.all(np.isfinite(n_b))):
            raise StatsInputError("assignment counts contain NaN or inf")
        if np.any(n_a < 0) or np.any(n_b < 0):
            raise StatsInputError("assignment counts n_a and n_b must be >= 0")
        rows = np.stack([n_a, n_b, fraction], axis=1)[:, :, None]
        self.srm.sync(rows)
        last = self.srm.last
        assert last is not None
        return last

    def _coverage_gap(self, policy: RolloutPolicy, name: str, cov: Coverage) -> CoverageGap:
        if cov.judged <= 0:
            return CoverageGap(False, float("nan"), float("nan"))
        memory = self.coverage.get(name)
        if memory is None:
            half = policy.srm_alpha / 2
            memory = self.coverage[name] = _CoverageMemory((
                History(MeanDiffTracker("binary", "decrease", half)),
                History(MeanDiffTracker("binary", "increase", half))))
        n_a = np.asarray(cov.exposures["n_a"], dtype=np.float64)[:cov.judged]
        n_b = np.asarray(cov.exposures["n_b"], dtype=np.float64)[:cov.judged]
        lab_a = np.minimum(np.asarray(cov.labelled["n_a"], dtype=np.float64)[:cov.judged], n_a)
        lab_b = np.minimum(np.asarray(cov.labelled["n_b"], dtype=np.float64)[:cov.judged], n_b)
        rows = stack_rows((n_a, lab_a, lab_a, n_b, lab_b, lab_b), 0, cov.judged)
        differs = False
        for side in memory.sides:
            side.sync(rows)
            last = side.last
            differs = differs or bool(last is not None and last.harm)
        state = memory.sides[0].states[-1]
        totals_a = state.arm_a[:2].sum(axis=1).tolist()
        totals_b = state.arm_b[:2].sum(axis=1).tolist()
        rate_a = totals_a[1] / totals_a[0] if totals_a[0] > 0 else float("nan")
        rate_b = totals_b[1] / totals_b[0] if totals_b[0] > 0 else float("nan")
        return CoverageGap(differs, rate_a, rate_b)

    def _metric(self, spec: MetricSpec, cells: Mapping[str, object], decisions: int,
                stage_start: int) -> tuple[int, MetricEvidence]:
        """Sync the metric's histories; return (first changed row, its evidence)."""
        memory = self.metrics[spec.name]
        judged = decisions - spec.label_delay_windows
        if judged <= 0:
            nan = float("nan")
            return decisions, MetricEvidence(nan, nan, -np.inf, np.inf, False, False,
                                              np.zeros(1), 1.0, 0.0, 0.0, 0)
        rows = _rows(cells, spec.kind, judged)
        first = memory.whole.sync(rows, _checker(spec.kind))
        whole = memory.whole.last
        assert whole is not None
        stage_ok, stage_low, stage_up, stage_effect = self._stage(memory, rows, stage_start,
                                                                  judged)
        lower, upper, effect = whole.lower, whole.upper, whole.effect
        crossed = lower > upper
        if crossed:
            lower, upper, effect = stage_low, stage_up, stage_effect
        return first, MetricEvidence(
            effect=effect, relative=whole.relative, lower=lower, upper=upper, crossed=crossed,
            stage_noninferior=stage_ok, log_e_harm=np.array([_clean(whole.log_e_harm)]),
            p_harm=whole.p_harm, n_a=whole.n_a, n_b=whole.n_b, windows_judged=judged)

    @staticmethod
    def _stage(memory: _MetricMemory, rows: FloatArray, stage_start: int,
               judged: int) -> tuple[bool, float, float, float]:
        start = max(stage_start, 0)
        if judged <= start:
            return False, -np.inf, np.inf, float("nan")
        if memory.stage_start != start:
            memory.stage = History(memory.stage.tracker)
            memory.stage_start = start
        memory.stage.sync(rows[start:judged])
        point = memory.stage.last
        assert point is not None
        ok = point.noninferior and point.lower <= point.upper
        return ok, point.lower, point.upper, point.effect

    def _averaged_harm(self, policy: RolloutPolicy, decisions: int,
                       changed: int) -> tuple[bool, float]:
        """Update the averaged harm e-process from decision ``changed`` on; return the test."""
        keep = min(changed, len(self.log_mean_e), decisions)
        del self.log_mean_e[keep:]
        del self.peaks[keep:]
        metrics = policy.metrics
        total = sum(spec.weight for spec in metrics)
        shares = [math.log(spec.weight / total) for spec in metrics]
        for t in range(keep, decisions):
            values = [self._log_e_at(spec, t) + share for spec, share in zip(metrics, shares,
                                                                             strict=True)]
            top = max(values)
            mean = top + math.log(sum(math.exp(v - top) for v in values)) \
                if math.isfinite(top) else top
            self.log_mean_e.append(mean)
            self.peaks.append(max(self.peaks[-1], mean) if self.peaks else mean)
        peak = self.peaks[-1]
        return peak >= math.log(1.0 / policy.rollback_alpha), min(1.0, math.exp(-peak))

    def _log_e_at(self, spec: MetricSpec, decision: int) -> float:
        row = decision - spec.label_delay_windows
        if row < 0:
            return 0.0
        return _clean(self.metrics[spec.name].whole.points[row].log_e_harm)


def _clean(log_e: float) -> float:
    """``np.nan_to_num(log_e, nan=0, neginf=-700)`` on one value."""
    if math.isnan(log_e):
        return 0.0
    if log_e == -math.inf:
        return _LOG_E_FLOOR
    if log_e == math.inf:
        return float(np.finfo(np.float64).max)
    return log_e


def _rows(cells: Mapping[str, object], kind: str, judged: int) -> FloatArray:
    """Return rows ``0..judged`` of a metric's cells as ``(windows, 6, segments)``."""
    fields = [np.asarray(cells[f], dtype=np.float64) if f in cells else None for f in FIELDS]
    arrays = [f for f in fields if f is not None]
    if len(arrays) != len(FIELDS) or any(f.ndim != 2 or f.shape != arrays[0].shape
                                         for f in arrays):
        as_cells(cells, kind)  # raises, naming the field
        raise StatsInputError("metric cells must be (windows, segments)")
    if arrays[0].shape[0] > judged:  # rows not judged yet are validated all the same
        _checker(kind)(stack_rows(arrays, judged, arrays[0].shape[0]))
    return stack_rows(arrays, 0, judged)


def _checker(kind: str) -> Callable[[FloatArray], None]:
    """Return a check of rows about to be folded: :func:`as_cells`'s validation.

    A vectorized test of the rules first; only rows that break one go through
    :func:`as_cells`, for its error message naming the field.
    """
    def check(rows: FloatArray) -> None:
        n, total = rows[:, (0, 3)], rows[:, (1, 4)]
        bad = (not np.isfinite(rows).all() or (n < 0).any() or ((n == 0) & (total != 0)).any()
               or (kind != "continuous" and (total < 0).any())
               or (kind == "binary" and (total > n).any()))
        if bad:
            as_cells({f: rows[:, i, :] for i, f in enumerate(FIELDS)}, kind)
    return check


def _any_scores(history: History) -> bool:
    """Return True once both arms have scored histograms (the drift test has data)."""
    state = history.states[-1]
    pooled = getattr(state, "pooled", None)
    return pooled is not None and bool(np.sum(pooled) > 0)
