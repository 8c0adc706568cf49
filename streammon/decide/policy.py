# ruff: noqa: RUF002  (formulas use Greek letters and math signs)
"""The rollout policy and the pure decision: ``assess_rollout(...) -> Assessment``.

After every closed window the decider passes the whole history of per-window cells (one
``(windows, segments)`` array set per metric, as :func:`streammon.stats.replay` takes
them) plus the assignment counts, and gets back what to do. Rules, in order:

1. A sample-ratio mismatch (:mod:`streammon.stats.srm`) **holds**: the metrics
   of a broken router are not judged. The caller restarts the check at every stage and
   after a resume (windows before that have a NaN intended fraction).
2. When the metrics' harm e-values, *averaged*, reach ``1/α_r`` the rollout **rolls
   back** (:mod:`streammon.stats.evidence`; ``α_r = alpha/2 − srm_alpha``).
3. When a metric's whole-rollout confidence sequence has an empty intersection, the
   effect changed during the rollout: **hold** with that reason.
4. At the top fraction, after ``min_final_windows`` windows in the final stage, when
   every metric shows non-inferiority at α/2 on the final stage's own windows (an
   intersection–union test), **promote**.
5. Below the top, after ``step_windows`` windows and ``min_samples_per_stage`` canary
   requests in the stage, **step** to the next stage.
6. Otherwise **continue**. A failure inside becomes an ``ERROR`` verdict (action
   ``hold``) with a message, never an exception (Argo ``reconcileAnalysisRun``).

α: false rollback ≤ α/2 and false promotion ≤ α/2 over the whole rollout, whatever the
number of looks; the bounds shown are a two-sided 1 − α confidence sequence. A metric
with ``label_delay_windows = d`` is judged on windows ``0..t−d`` only.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np

from streammon.decide.spec import check_fractions
from streammon.decide.strategies import DEFAULT_STAGES
from streammon.events import (
    BadDirection,
    Decision,
    Kind,
    MetricEstimate,
    SpecDefaults,
    Verdict,
)
from streammon.stats.assignment import canary_samples, check_assignment
from streammon.stats.cells import (
    DIRECTIONS,
    KINDS,
    FloatArray,
    StatsInputError,
    check_alpha,
    check_choice,
)
from streammon.stats.evidence import MetricEvidence, assess_metric_evidence, averaged_harm
from streammon.stats.horizon import CoverageGap, compute_coverage_gap
from streammon.stats.srm import compute_srm

_SEVERITY = {verdict: rank for rank, verdict in enumerate(Verdict)}


def srm_alpha_for(alpha: float) -> float:
    """Return the sample-ratio check's level in a rollout at ``alpha``: min(0.001, alpha/10)."""
    return min(0.001, alpha / 10)


def worst(verdicts: list[Verdict]) -> Verdict:
    """Return the most severe verdict (declaration order of :class:`Verdict`)."""
    return max(verdicts, key=_SEVERITY.__getitem__, default=Verdict.PENDING)


@dataclass(frozen=True)
class MetricSpec:
    """One judged metric: its kind, the direction that hurts users and its margin."""

    name: str
    kind: Kind
    bad_direction: BadDirection
    margin: float = 0.0
    label_delay_windows: int = 0
    weight: float = 1.0
    """Its share of the averaged harm e-value (relative to the other metrics' weights)."""

    def __post_init__(self) -> None:
        """Validate the fields; raise :class:`StatsInputError` naming the bad one."""
        check_choice(f"metric {self.name!r} kind", self.kind, KINDS)
        check_choice(f"metric {self.name!r} bad_direction", self.bad_direction, DIRECTIONS)
        if not (np.isfinite(self.margin) and self.margin >= 0):
            raise StatsInputError(f"metric {self.name!r}: margin must be finite and >= 0")
        if self.label_delay_windows < 0:
            raise StatsInputError(f"metric {self.name!r}: label_delay_windows must be >= 0")
        if not (np.isfinite(self.weight) and self.weight > 0):
            raise StatsInputError(f"metric {self.name!r}: weight must be finite and > 0")


@dataclass(frozen=True)
class RolloutPolicy:
    """How a rollout ramps and what it takes to step, promote or roll back.

    Built from a checked spec by :func:`streammon.decide.progress.policy_from_spec`; the
    defaults are the spec's (:class:`~streammon.events.SpecDefaults`) and ``stages`` is
    the ramp :mod:`streammon.decide.strategies` computes. ``min_final_windows=None``
    means ``step_windows``, as in the spec.
    """

    metrics: tuple[MetricSpec, ...]
    alpha: float = SpecDefaults.ALPHA
    stages: tuple[float, ...] = DEFAULT_STAGES
    step_windows: int = SpecDefaults.STEP_WINDOWS
    min_samples_per_stage: int = SpecDefaults.MIN_SAMPLES_PER_STAGE
    min_final_windows: int | None = None
    srm_alpha: float = srm_alpha_for(SpecDefaults.ALPHA)
    max_windows: int | None = None

    def __post_init__(self) -> None:
        """Check what the spec does not fix (``srm_alpha``); raise naming the bad field."""
        check_alpha("alpha", self.alpha)
        check_alpha("srm_alpha", self.srm_alpha)
        if not self.metrics or len({m.name for m in self.metrics}) != len(self.metrics):
            raise StatsInputError("metrics must be a non-empty tuple with unique names")
        if self.srm_alpha >= self.alpha / 2:
            raise StatsInputError("srm_alpha must be smaller than alpha/2 (it is part of the "
                                  "rollback half)")
        check_fractions(self.stages, "stages")

    @property
    def metric_alpha(self) -> float:
        """Return the level of each side of the bounds shown: ``alpha/2`` (two-sided 1 − α)."""
        return self.alpha / 2

    @property
    def rollback_alpha(self) -> float:
        """Return the level of the averaged harm e-process: ``alpha/2 − srm_alpha``."""
        return self.alpha / 2 - self.srm_alpha

    @property
    def top_fraction(self) -> float:
        """Return the fraction at which promotion is judged: the last stage's."""
        return self.stages[-1]

    @property
    def final_windows(self) -> int:
        """Return the windows the final stage must last before promotion."""
        return self.step_windows if self.min_final_windows is None else self.min_final_windows

    def fraction_at(self, stage: int) -> float:
        """Return the canary fraction of ``stage`` (stages past the last stay at the last)."""
        return float(self.stages[min(max(stage, 0), len(self.stages) - 1)])


@dataclass(frozen=True)
class Coverage:
    """A metric's judged labelled counts and the predictions per cell, for the coverage guard."""

    labelled: Mapping[str, FloatArray]
    exposures: Mapping[str, FloatArray]
    judged: int


@dataclass(frozen=True)
class Assessment:
    """What to do now: verdict, action, the traffic fraction to set and the evidence."""

    verdict: Verdict
    action: Decision
    fraction: float
    stage: int
    estimates: tuple[MetricEstimate, ...]
    srm_p_value: float
    message: str = ""


def steady_windows(n_a: FloatArray, n_b: FloatArray,
                   fraction: FloatArray) -> tuple[FloatArray, FloatArray, FloatArray]:
    """Return assignment counts with the windows whose split changed (NaN fraction) emptied.

    Zero counts add no evidence to the sample-ratio e-process, so those windows are left
    out without breaking the per-window alignment.
    """
    mixed = ~np.isfinite(fraction)
    return (np.where(mixed, 0.0, n_a), np.where(mixed, 0.0, n_b),
            np.where(mixed, 0.5, fraction))


def assess_rollout(
    policy: RolloutPolicy,
    cells_by_metric: Mapping[str, Mapping[str, object]],
    assignment: Mapping[str, object],
    stage: int,
    windows_in_stage: int,
    coverage: Mapping[str, Coverage] | None = None,
) -> Assessment:
    """Decide after the latest closed window; never raises on bad data (returns ERROR).

    ``coverage`` (metrics with an attribution horizon) holds the rollout when a metric's
    label coverage differs between the arms (tested at ``srm_alpha``).
    """
    try:
        return _assess(policy, cells_by_metric, assignment, stage, windows_in_stage,
                       coverage or {})
    except (ValueError, KeyError, TypeError, FloatingPointError) as exc:
        return Assessment(Verdict.ERROR, "hold", policy.fraction_at(stage), stage, (),
                          float("nan"), f"{type(exc).__name__}: {exc}")


def _assess(policy: RolloutPolicy, cells_by_metric: Mapping[str, Mapping[str, object]],
            assignment: Mapping[str, object], stage: int, windows_in_stage: int,
            coverage: Mapping[str, Coverage]) -> Assessment:
    n_a, n_b, fraction = check_assignment(assignment)
    if n_b.size == 0:
        return pending(policy, stage)
    srm = compute_srm(*steady_windows(n_a, n_b, fraction), alpha=policy.srm_alpha)
    srm_p = float(srm.p_value[-1])
    if srm.mismatch[-1]:
        return srm_halt(policy, stage, srm_p)
    for name, cov in coverage.items():
        gap = compute_coverage_gap(cov.labelled, cov.exposures, cov.judged, policy.srm_alpha)
        if gap.differs:
            return coverage_halt(policy, stage, srm_p, name, gap)
    check_metrics(policy, cells_by_metric)
    stage_start = n_b.size - windows_in_stage
    evidence = [assess_metric_evidence(
        cells_by_metric[m.name], kind=m.kind, bad_direction=m.bad_direction, margin=m.margin,
        label_delay_windows=m.label_delay_windows, alpha=policy.alpha, stage_start=stage_start)
        for m in policy.metrics]
    harm, p_harm = averaged_harm([e.log_e_harm for e in evidence], policy.rollback_alpha,
                                 [m.weight for m in policy.metrics])
    return judge(policy, evidence, harm, p_harm, n_b, stage, windows_in_stage, srm_p)


def pending(policy: RolloutPolicy, stage: int) -> Assessment:
    """Return the assessment before any window closed."""
    return Assessment(Verdict.PENDING, "continue", policy.fraction_at(stage), stage, (), 1.0,
                      "no windows yet")


def srm_halt(policy: RolloutPolicy, stage: int, srm_p: float) -> Assessment:
    """Return the hold of a sample-ratio mismatch (rule 1)."""
    return Assessment(Verdict.HALT, "hold", policy.fraction_at(stage), stage, (), srm_p,
                      f"sample-ratio mismatch (p = {srm_p:.2g}): check the router")


def coverage_halt(policy: RolloutPolicy, stage: int, srm_p: float, name: str,
                  gap: CoverageGap) -> Assessment:
    """Return the hold of arm-dependent label coverage."""
    return Assessment(Verdict.HALT, "hold", policy.fraction_at(stage), stage, (), srm_p,
                      f"label coverage of {name} differs by arm (baseline "
                      f"{gap.baseline:.1%}, canary {gap.canary:.1%} of predictions): "
                      "outcomes go missing or arrive late in one arm")


def check_metrics(policy: RolloutPolicy, cells_by_metric: Mapping[str, object]) -> None:
    """Raise :class:`StatsInputError` when a judged metric has no cells."""
    missing = [m.name for m in policy.metrics if m.name not in cells_by_metric]
    if missing:
        raise StatsInputError(f"cells_by_metric lacks metrics {missing}")


def judge(policy: RolloutPolicy, evidence: list[MetricEvidence], harm: bool, p_harm: float,
          n_b: FloatArray, stage: int, windows_in_stage: int, srm_p: float) -> Assessment:
    """Apply rules 2–5 to the metrics' evidence (shared by the full and incremental paths)."""
    if harm:
        estimates = _estimates(policy, evidence, harm=True)
        harmed = ", ".join(e.name for e in estimates if e.verdict == Verdict.ROLLBACK)
        return Assessment(Verdict.ROLLBACK, "rollback", 0.0, stage, estimates, srm_p,
                          f"harm: {harmed} (p = {p_harm:.2g})")
    estimates = _estimates(policy, evidence, harm=False)
    changed = [m.name for m, e in zip(policy.metrics, evidence, strict=True) if e.crossed]
    if changed:
        return Assessment(Verdict.HALT, "hold", policy.fraction_at(stage), stage, estimates,
                          srm_p,
                          f"effect changed during the rollout: {', '.join(changed)} (the "
                          "confidence bounds of the stages no longer overlap); review it")
    verdict = worst([e.verdict for e in estimates])
    return _advance(policy, estimates, verdict, n_b, stage, windows_in_stage, srm_p)


def _estimates(policy: RolloutPolicy, evidence: list[MetricEvidence],
               *, harm: bool) -> tuple[MetricEstimate, ...]:
    """Return the per-metric estimates; on harm, the metrics carrying it are ROLLBACK."""
    last = [float(e.log_e_harm[-1]) if e.log_e_harm.size else 0.0 for e in evidence]
    top = max(last, default=0.0)
    out = []
    for spec, e, log_e in zip(policy.metrics, evidence, last, strict=True):
        if harm and (log_e >= top or log_e >= np.log(1.0 / policy.rollback_alpha)):
            verdict = Verdict.ROLLBACK
        elif e.stage_noninferior:
            verdict = Verdict.PROMOTE
        elif e.windows_judged == 0 or e.n_b == 0:
            verdict = Verdict.PENDING
        else:
            verdict = Verdict.RUNNING
        out.append(MetricEstimate(
            name=spec.name, effect=e.effect, rel_effect=e.relative, lower=e.lower,
            upper=e.upper, n_baseline=int(e.n_a), n_canary=int(e.n_b), verdict=verdict,
            p_harm=e.p_harm, windows_judged=e.windows_judged, changed=e.crossed))
    return tuple(out)


def _advance(policy: RolloutPolicy, estimates: tuple[MetricEstimate, ...], verdict: Verdict,
             n_b: FloatArray, stage: int, windows_in_stage: int, srm_p: float) -> Assessment:
    current = policy.fraction_at(stage)
    if current >= policy.top_fraction:
        if verdict == Verdict.PROMOTE and windows_in_stage >= policy.final_windows:
            return Assessment(verdict, "promote", 1.0, stage, estimates, srm_p,
                              f"non-inferiority shown on every metric in the final stage "
                              f"({windows_in_stage} windows)")
        if policy.max_windows is not None and n_b.size >= policy.max_windows:
            return Assessment(Verdict.INCONCLUSIVE, "hold", current, stage, estimates, srm_p,
                              f"no decision after {n_b.size} windows")
        return Assessment(Verdict.RUNNING, "continue", current, stage, estimates, srm_p)
    samples = canary_samples(n_b, windows_in_stage)
    if windows_in_stage >= policy.step_windows and samples >= policy.min_samples_per_stage:
        nxt = policy.fraction_at(stage + 1)
        return Assessment(Verdict.STEP, "step", nxt, stage + 1, estimates, srm_p,
                          f"stage {stage} clean: {current:.3g} -> {nxt:.3g}")
    return Assessment(Verdict.RUNNING, "continue", current, stage, estimates, srm_p)
