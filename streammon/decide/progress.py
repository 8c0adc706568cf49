"""A rollout's progress, window after window, as pure state transitions.

The decider agent keeps one :class:`RolloutState` per rollout and the latest cumulative
cohort summaries. :func:`progress` closes every window whose end plus grace has passed
in *event time*, lays the summaries out as (windows, segments) arrays per metric and
arm (the matched cells, never pooled), asks the rollout's incremental
:class:`streammon.decide.assessor.RolloutAssessor` (the decision of
:func:`streammon.decide.policy.assess_rollout`, O(1) per window) what to do, and returns
the commands and diagnoses to send. No clock, no I/O.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable
from typing import Literal, NamedTuple

import msgspec
import numpy as np

from streammon.control import commands
from streammon.control.commands import Phase
from streammon.control.keys import Signer
from streammon.decide import cell_grid, covariate, postmortem, strategies, tail
from streammon.decide.assessor import RolloutAssessor
from streammon.decide.attribution import is_prediction_time, judge_delay_windows
from streammon.decide.policy import (
    Assessment,
    Coverage,
    MetricSpec,
    RolloutPolicy,
    srm_alpha_for,
)
from streammon.events import (
    Action,
    CohortSummary,
    Command,
    CommandNote,
    Decision,
    Diagnosis,
    MetricSpecWire,
    RollbackReport,
    RolloutSpec,
    Verdict,
    json_number,
)
from streammon.stats.cells import FIELDS
from streammon.stats.horizon import FrozenStore, freeze_rows

SWITCH_MARGIN_MS = 1000
PENDING_TIMEOUT_MS = 30_000


class RolloutState(msgspec.Struct, kw_only=True):
    """What the decider remembers about one rollout (stored in a Faust table)."""

    spec: RolloutSpec
    origin_ms: int
    seq: int = 1
    stage: int = 0
    stage_start_window: int = 0
    windows_closed: int = 0
    phase: Phase = "running"
    stage_changes: list[tuple[int, int]] = msgspec.field(default_factory=list)
    srm_start_window: int = 0
    """First window of the sample-ratio check: it restarts at every stage and resume."""
    frozen: dict[str, FrozenStore] = msgspec.field(default_factory=dict)
    """Judged cohorts of every metric (judged once, never revised): metric -> window ->
    segment -> cell (:mod:`streammon.decide.attribution` says when each is judged)."""
    tail: dict[str, tuple[int, int]] = msgspec.field(default_factory=dict)
    """Metrics judged on a latency quantile: (calibration window, first bin above τ)."""
    last_action: str = "start"
    commands: list[CommandNote] = msgspec.field(default_factory=list)
    epoch: str = ""
    proposed_ms: int = 0

    @property
    def fraction(self) -> float:
        """The share of traffic the routers send to the candidate now."""
        if self.phase in commands.FINAL_PHASES:
            return 1.0 if self.phase == "promoted" else 0.0
        return strategies.served_fraction(self.spec, self.stage)


def policy_from_spec(spec: RolloutSpec) -> RolloutPolicy:
    """Return the decision policy a rollout spec describes.

    Alpha is split evenly between the guarded metrics and, when on, the drift guard; the
    sample-ratio check takes its share out of the metrics' part.
    """
    metrics = tuple(MetricSpec(m.name, judged_kind(m), m.bad_direction, m.margin,
                               judge_delay_windows(spec, m), m.weight) for m in spec.metrics)
    return RolloutPolicy(
        metrics=metrics, alpha=spec.alpha - drift_alpha(spec),
        stages=strategies.stage_fractions(spec), step_windows=spec.step_windows,
        min_samples_per_stage=spec.min_samples_per_stage,
        srm_alpha=srm_alpha_for(spec.alpha), min_final_windows=spec.min_final_windows)


def judged_kind(metric: MetricSpecWire) -> Literal["binary", "continuous", "count"]:
    """Return the kind a metric is judged as: its tail share is binary, CUPED continuous."""
    if metric.quantile is not None:
        return "binary"
    if metric.covariate:
        return "continuous"
    return metric.kind


def drift_alpha(spec: RolloutSpec) -> float:
    """Return the share of alpha spent on the drift guard (0 when it is off)."""
    if not strategies.drift_guarded(spec):
        return 0.0
    return spec.alpha / (len(spec.metrics) + 1)


def start_state(cmd: Command) -> RolloutState:
    """Return the state of a rollout that a ``start`` command opens."""
    assert cmd.spec is not None
    origin = cmd.ts_ms - cmd.ts_ms % cmd.spec.window_ms
    return RolloutState(spec=cmd.spec, origin_ms=origin, seq=cmd.seq, commands=[_note(cmd)],
                        stage_changes=[(cmd.ts_ms, 0)], epoch=cmd.epoch)


def _note(cmd: Command) -> CommandNote:
    return CommandNote(cmd.seq, cmd.action, cmd.fraction, cmd.ts_ms, cmd.issued_by)


def apply_command(state: RolloutState, cmd: Command) -> RolloutState:
    """Fold a command seen on the control topic (ours or an operator's) into the state."""
    if cmd.seq <= state.seq:
        return state
    _take(state, cmd.seq, cmd.action, commands.PHASES[cmd.action], _note(cmd))
    if cmd.action == "step" and cmd.stage != state.stage:
        _enter_stage(state, cmd.stage, cmd.ts_ms)
    return state


def _take(state: RolloutState, seq: int, action: Action, phase: Phase,
          note: CommandNote) -> None:
    """Take a command (ours or the applied one): its seq, action and phase.

    A new resume restarts the sample-ratio check, with its own budget: the evidence that
    halted the rollout does not halt it again.
    """
    if action == "resume" and seq > state.seq:
        state.srm_start_window = state.windows_closed
    state.seq, state.last_action, state.phase = seq, action, phase
    state.commands.append(note)


def _enter_stage(state: RolloutState, stage: int, ts_ms: int) -> None:
    """Enter ``stage``, served from ``ts_ms``: its windows and its sample-ratio check start."""
    state.stage = stage
    state.stage_start_window = state.srm_start_window = state.windows_closed
    state.stage_changes.append((ts_ms, stage))


def sync_applied(state: RolloutState, applied: commands.RouteState, now_ms: int,
                 pending_ms: int = PENDING_TIMEOUT_MS) -> RolloutState:
    """Make the applied route state (the actuator's word) the decider's view of a rollout.

    The decider's own proposal is only a proposal: if another command took its seq (an
    operator's hold, a rollback), the applied state wins. A proposal not applied yet
    (applied seq below ours) is waited for ``pending_ms``, then given up.

    The routers switch when the actuator applies a stage change, not when it was proposed:
    while the decider's step is pending its stage change is moved to ``now_ms`` (routers
    still serve the old stage), and once applied it is dated ``applied.applied_ms``, so the
    sample-ratio check never expects a split the routers were not serving yet (a step
    delayed by an actuator restart or a broker outage is not a sample-ratio mismatch).
    """
    if applied.epoch != state.epoch or applied.rollout_id != state.spec.rollout_id:
        return state
    if applied.seq < state.seq and now_ms - state.proposed_ms < pending_ms:
        if applied.stage != state.stage:
            _date_stage_change(state, state.stage, now_ms)
        return state
    switched_ms = max(applied.ts_ms, applied.applied_ms)
    if (applied.seq, applied.phase, applied.stage) == (state.seq, state.phase, state.stage):
        if applied.action in ("start", "step"):
            _date_stage_change(state, applied.stage, switched_ms)
        return state
    if applied.seq <= state.seq and state.stage_changes and state.stage != applied.stage \
            and state.stage_changes[-1][1] == state.stage:
        state.stage_changes.pop()  # our stage change never applied: the routers never served it
    _take(state, applied.seq, applied.action, applied.phase,
          CommandNote(applied.seq, applied.action, applied.fraction, applied.ts_ms,
                      applied.issued_by))
    if applied.stage != state.stage:
        if state.stage_changes and state.stage_changes[-1][1] == applied.stage:
            state.stage = applied.stage  # back to the stage the routers kept serving
            state.stage_start_window = state.windows_closed
        else:
            _enter_stage(state, applied.stage, switched_ms)
    return state


def _date_stage_change(state: RolloutState, stage: int, at_ms: int) -> None:
    """Move the latest stage change (to ``stage``) later, to ``at_ms``; never earlier."""
    if state.stage_changes and state.stage_changes[-1][1] == stage \
            and state.stage_changes[-1][0] < at_ms:
        state.stage_changes[-1] = (at_ms, stage)


def closed_windows(state: RolloutState, watermark_ms: int) -> int:
    """Return how many decision windows have closed by event time ``watermark_ms``."""
    spec = state.spec
    return max(0, (watermark_ms - spec.grace_ms - state.origin_ms) // spec.window_ms)


def state_after(start: Command, commands: Iterable[Command], windows_closed: int) -> RolloutState:
    """Return a rollout's state rebuilt from its commands after ``windows_closed`` windows.

    What a report needs to lay the cells out as the decider did, without the decider's table.
    """
    state = start_state(start)
    state.windows_closed = windows_closed
    state.stage_changes = stage_changes_of(commands)
    return state


def stage_changes_of(commands: Iterable[Command]) -> list[tuple[int, int]]:
    """Return (ts_ms, stage) of the start and of every step, from the control topic."""
    return [(c.ts_ms, c.stage) for c in commands if c.action in ("start", "step")]


def intended_fractions(state: RolloutState, windows: int,
                       switch_margin_ms: int = SWITCH_MARGIN_MS) -> np.ndarray:
    """Return the canary share each window was meant to get; NaN where the split changed.

    A stage change at ``ts_ms`` reaches every router within ``switch_margin_ms`` (pub/sub
    or the fast path, with polling as the fallback), so each window that overlaps
    [ts_ms, ts_ms + margin] is a mix of two splits and is left out of the ratio check.
    The decision comes a grace period after its window ends, so the switch can fall in
    any later window: the timestamps, not the window counts, say which.
    """
    spec = state.spec
    starts = state.origin_ms + spec.window_ms * np.arange(windows)
    out = np.full(windows, np.nan)
    for ts_ms, stage in sorted(state.stage_changes):
        out[starts >= ts_ms + switch_margin_ms] = strategies.intended_canary_share(spec, stage)
    for ts_ms, _stage in state.stage_changes:
        out[(starts < ts_ms + switch_margin_ms) & (starts + spec.window_ms > ts_ms)] = np.nan
    out[:state.srm_start_window] = np.nan  # an exact test per stage, afresh after a resume
    return out


def build_cells(state: RolloutState, summaries: Iterable[CohortSummary],
                windows: int) -> cell_grid.Grid:
    """Lay the rollout's summaries out for its first ``windows`` decision windows.

    A latency metric with a ``quantile`` is laid out as its exceedance cells
    (:mod:`streammon.decide.tail`), at the threshold fixed on its calibration window; an
    outcome metric with a ``covariate`` as its CUPED-adjusted cells
    (:mod:`streammon.decide.covariate`).
    """
    spec = state.spec
    names = [m.name for m in spec.metrics]
    quantiles = {m.name: m.quantile for m in spec.metrics if m.quantile is not None}
    extra = (list(tail.BIN_METRICS) if quantiles else []) + covariate.covariate_names(spec)
    grid = cell_grid.build_grid(
        summaries, origin_ms=state.origin_ms, window_ms=spec.window_ms,
        windows=windows, metrics=names + extra, intended=intended_fractions(state, windows))
    for name, quantile in quantiles.items():
        grid.cells[name] = _tail_cells(state, grid, name, quantile)
    if "timeout" in grid.cells:  # the join counts timeouts only; every prediction is exposed
        grid.cells["timeout"]["n_a"] = grid.exposures["n_a"].copy()
        grid.cells["timeout"]["n_b"] = grid.exposures["n_b"].copy()
    for metric in spec.metrics:
        if metric.covariate:
            grid.cells[metric.name] = covariate.adjusted(grid.cells, metric.name, metric.kind)
    for extra_name in extra:
        grid.cells.pop(extra_name, None)
    return grid


def _tail_cells(state: RolloutState, grid: cell_grid.Grid, name: str,
                quantile: float) -> dict[str, np.ndarray]:
    """Return a latency metric's exceedance cells at its threshold, fixed once (stored)."""
    fixed = state.tail.get(name)
    if fixed is None:
        bins_a = np.stack([grid.cells[m]["n_a"].sum(axis=1) for m in tail.BIN_METRICS], axis=1)
        found = tail.calibrate(bins_a, quantile)
        if found is None:
            return {f: np.zeros_like(grid.cells[name]["n_a"]) for f in FIELDS}
        fixed = state.tail[name] = found
    return tail.exceedance_cells(grid.cells, *fixed)


class Progress(NamedTuple):
    """What one call to :func:`progress` produced, to send in this order."""

    diagnoses: list[Diagnosis]
    commands: list[Command]
    reports: list[RollbackReport]


def progress(
    state: RolloutState, summaries: list[CohortSummary], watermark_ms: int, *, now_ms: int,
    key: Signer | None, assessor: RolloutAssessor | None = None,
) -> Progress:
    """Assess every newly closed window; return diagnoses, commands and post-mortems.

    Commands are signed with ``key``; None leaves them unsigned (the event-level backtest).
    ``assessor`` is the rollout's incremental decision state
    (:class:`~streammon.decide.assessor.RolloutAssessor`), kept by the caller between
    calls so that each window folds only what is new; a fresh one catches up on the whole
    history (after a restart) and decides alike.
    """
    out = Progress([], [], [])
    assessor = assessor if assessor is not None else RolloutAssessor()
    target = closed_windows(state, watermark_ms)
    policy = policy_from_spec(state.spec)
    while state.phase == "running" and state.windows_closed < target:
        state.windows_closed += 1
        t = state.windows_closed
        grid = build_cells(state, summaries, t)
        coverage = freeze_judged(state, grid, t)
        result = assessor.assess(policy, grid.cells, grid.assignment, stage=state.stage,
                                 windows_in_stage=t - state.stage_start_window,
                                 coverage=coverage)
        drift_p = assessor.drift_p_value(grid.hist_a, grid.hist_b)
        if drift_p <= drift_alpha(state.spec) and result.action != "rollback":
            result = dataclasses.replace(
                result, verdict=Verdict.ROLLBACK, action="rollback",
                message=f"prediction drift (p = {drift_p:.2g}): candidate scores differ")
        out.diagnoses.append(_diagnosis(state, result, now_ms, drift_p))
        cmd = _command_for(state, result.action, result.message, now_ms, key)
        if cmd is None:
            continue
        out.commands.append(cmd)
        apply_command(state, cmd)
        state.proposed_ms = now_ms
        if cmd.action == "rollback":
            out.reports.append(postmortem.build_rollback_report(
                state.spec, policy, grid, result, drift_p=drift_p, windows_closed=t,
                commands=state.commands, now_ms=now_ms))
    return out


def freeze_judged(state: RolloutState, grid: cell_grid.Grid,
                  windows: int) -> dict[str, Coverage]:
    """Freeze the outcome metrics' judged cohorts; return their coverage inputs.

    Judge once, never revise: a cohort's cells are stored the first time it is judged (its
    attribution horizon passed, :func:`~streammon.decide.attribution.judge_delay_windows`)
    and read back from then on; its label coverage is guarded. A prediction-time metric
    (latency, error, timeout) needs no copy: its cohort is judged once its window closed
    on every partition, and the join drops any later prediction of that window as late,
    so its cells never change after they are judged (storing them would only grow the
    rollout's state by windows x segments x metrics).
    """
    coverage: dict[str, Coverage] = {}
    for metric in state.spec.metrics:
        if metric.name not in grid.cells or is_prediction_time(metric):
            continue
        delay = judge_delay_windows(state.spec, metric)
        grid.cells[metric.name] = freeze_rows(state.frozen.setdefault(metric.name, {}),
                                              grid.cells[metric.name], grid.segments,
                                              windows - 1 - delay)
        coverage[metric.name] = Coverage(grid.cells[metric.name], grid.exposures,
                                         windows - delay)
    return coverage


def _command_for(state: RolloutState, action: Decision, reason: str, now_ms: int,
                 key: Signer | None) -> Command | None:
    if action == "continue":
        return None
    command: Action = action
    spec = state.spec
    stage = state.stage + 1 if command == "step" else state.stage
    return commands.make_command(
        rollout_id=spec.rollout_id, seq=state.seq + 1, action=command,
        baseline=spec.baseline, candidate=spec.candidate,
        fraction=strategies.served_fraction(spec, stage),
        stage=stage, reason=reason, issued_by="decider", now_ms=now_ms, key=key,
        epoch=state.epoch)


def _diagnosis(state: RolloutState, result: Assessment, now_ms: int,
               drift_p: float) -> Diagnosis:
    spec = state.spec
    return Diagnosis(
        rollout_id=spec.rollout_id,
        window_start_ms=state.origin_ms + (state.windows_closed - 1) * spec.window_ms,
        windows_closed=state.windows_closed, stage=state.stage, fraction=state.fraction,
        action=result.action, verdict=str(result.verdict), message=result.message,
        metrics=[e.json_safe() for e in result.estimates], ts_ms=now_ms,
        srm_p_value=json_number(result.srm_p_value, 1.0), drift_p_value=drift_p)
