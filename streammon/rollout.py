"""A rollout's progress, window after window, as pure state transitions.

The decider agent keeps one :class:`RolloutState` per rollout and the latest cumulative
cohort summaries. :func:`progress` closes every window whose end plus grace has passed
in *event time*, lays the summaries out as (windows, segments) arrays per metric and
arm (the matched cells, never pooled), asks :func:`streammon.decide.assess_rollout`
what to do, and returns the commands and diagnoses to send. No clock, no I/O.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from typing import Literal

import msgspec
import numpy as np

from streammon import control, decide
from streammon.events import CohortSummary, Command, Diagnosis, MetricEstimate, RolloutSpec

Phase = Literal["running", "held", "promoted", "rolled_back"]
CELL_FIELDS = ("n_a", "sum_a", "sumsq_a", "n_b", "sum_b", "sumsq_b")
_ACTION_COMMAND = {"step": "step", "rollback": "rollback", "promote": "promote", "halt": "hold"}


class RolloutState(msgspec.Struct, kw_only=True):
    """What the decider remembers about one rollout (stored in a Faust table)."""

    spec: RolloutSpec
    origin_ms: int
    seq: int = 1
    stage: int = 0
    stage_start_window: int = 0
    windows_closed: int = 0
    phase: Phase = "running"
    stage_starts: list[int] = msgspec.field(default_factory=lambda: [0])
    last_action: str = "start"

    @property
    def fraction(self) -> float:
        """The canary's current traffic fraction."""
        return 0.0 if self.phase == "rolled_back" else (
            1.0 if self.phase == "promoted" else fraction_at(self.spec, self.stage))


def fraction_at(spec: RolloutSpec, stage: int) -> float:
    """Return f_t = min(f_max, f0 * r**t), the canary fraction of stage ``t``."""
    return float(min(spec.f_max, spec.f0 * spec.growth**stage))


def policy_from_spec(spec: RolloutSpec) -> decide.RolloutPolicy:
    """Return the decision policy a rollout spec describes."""
    metrics = tuple(decide.MetricSpec(m.name, m.kind, m.bad_direction, m.margin,
                                      m.label_delay_windows) for m in spec.metrics)
    return decide.RolloutPolicy(
        metrics=metrics, alpha=spec.alpha, f0=spec.f0, growth=spec.growth, f_max=spec.f_max,
        step_windows=spec.step_windows, min_samples_per_stage=spec.min_samples_per_stage,
        srm_alpha=min(0.001, spec.alpha / 10))


def start_state(cmd: Command) -> RolloutState:
    """Return the state of a rollout that a ``start`` command opens."""
    assert cmd.spec is not None
    origin = cmd.ts_ms - cmd.ts_ms % cmd.spec.window_ms
    return RolloutState(spec=cmd.spec, origin_ms=origin, seq=cmd.seq)


def apply_command(state: RolloutState, cmd: Command) -> RolloutState:
    """Fold a command seen on the control topic (ours or an operator's) into the state."""
    if cmd.seq <= state.seq:
        return state
    state.seq = cmd.seq
    state.last_action = cmd.action
    state.phase = {"rollback": "rolled_back", "promote": "promoted", "hold": "held",
                   "resume": "running"}.get(cmd.action, state.phase)  # type: ignore[assignment]
    if cmd.action == "step" and cmd.stage != state.stage:
        state.stage = cmd.stage
        state.stage_start_window = state.windows_closed
        state.stage_starts.append(state.windows_closed)
    return state


def closed_windows(state: RolloutState, watermark_ms: int) -> int:
    """Return how many decision windows have closed by event time ``watermark_ms``."""
    spec = state.spec
    return max(0, (watermark_ms - spec.grace_ms - state.origin_ms) // spec.window_ms)


def build_cells(
    state: RolloutState, summaries: Iterable[CohortSummary], windows: int
) -> tuple[dict[str, dict[str, np.ndarray]], dict[str, np.ndarray]]:
    """Lay summaries out per metric as per-window (windows, segments) arrays, and SRM counts."""
    spec = state.spec
    rows = [s for s in summaries if s.window_start_ms >= state.origin_ms]
    segments = sorted({s.segment for s in rows}) or ["all"]
    seg_index = {s: i for i, s in enumerate(segments)}
    shape = (windows, len(segments))
    names = [m.name for m in spec.metrics] + ["error"]
    cells = {m: {f: np.zeros(shape) for f in CELL_FIELDS} for m in names}
    for s in rows:
        w = (s.window_start_ms - state.origin_ms) // spec.window_ms
        if w >= windows:
            continue
        suffix = "a" if s.arm == "baseline" else "b"
        for metric, sums in s.metrics.items():
            if metric in cells:
                arrays = cells[metric]
                arrays[f"n_{suffix}"][w, seg_index[s.segment]] += sums.n
                arrays[f"sum_{suffix}"][w, seg_index[s.segment]] += sums.sum
                arrays[f"sumsq_{suffix}"][w, seg_index[s.segment]] += sums.sumsq
    return {m.name: cells[m.name] for m in spec.metrics}, _assignment(state, cells["error"])


def _assignment(state: RolloutState, exposures: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """Per-window assignment counts and intended fractions for the sample-ratio check.

    The first window of every stage is part old split, part new (the switch happens
    inside it), so its counts are left out (set to zero, which adds no evidence).
    """
    fraction = intended_fractions(state, exposures["n_a"].shape[0])
    mixed = np.isnan(fraction)
    n_a, n_b = exposures["n_a"].sum(axis=1), exposures["n_b"].sum(axis=1)
    n_a[mixed] = n_b[mixed] = 0.0
    return {"n_a": n_a, "n_b": n_b, "fraction": np.where(mixed, 0.5, fraction)}


def intended_fractions(state: RolloutState, windows: int) -> np.ndarray:
    """Return the canary fraction each window was meant to get; NaN where it changed."""
    out = np.full(windows, np.nan)
    starts = state.stage_starts
    for stage, first in enumerate(starts):
        last = starts[stage + 1] if stage + 1 < len(starts) else windows
        out[first + 1:last] = fraction_at(state.spec, stage)
    return out


def progress(
    state: RolloutState, summaries: list[CohortSummary], watermark_ms: int, *, now_ms: int,
    key: bytes,
) -> tuple[list[Diagnosis], list[Command]]:
    """Assess every newly closed window; return diagnoses and (signed) commands to send."""
    diagnoses: list[Diagnosis] = []
    commands: list[Command] = []
    target = closed_windows(state, watermark_ms)
    while state.phase == "running" and state.windows_closed < target:
        state.windows_closed += 1
        t = state.windows_closed
        cells, assignment = build_cells(state, summaries, t)
        result = decide.assess_rollout(
            policy_from_spec(state.spec), cells, assignment,
            stage=state.stage, windows_in_stage=t - state.stage_start_window)
        diagnoses.append(_diagnosis(state, result, now_ms))
        cmd = _command_for(state, result.action, result.message, now_ms, key)
        if cmd is not None:
            commands.append(cmd)
            apply_command(state, cmd)
    return diagnoses, commands


def _command_for(state: RolloutState, action: str, reason: str, now_ms: int,
                 key: bytes) -> Command | None:
    command = _ACTION_COMMAND.get(action)
    if command is None:
        return None
    spec = state.spec
    stage = state.stage + 1 if command == "step" else state.stage
    return control.make_command(
        rollout_id=spec.rollout_id, seq=state.seq + 1, action=command,  # type: ignore[arg-type]
        baseline=spec.baseline, candidate=spec.candidate, fraction=fraction_at(spec, stage),
        stage=stage, reason=reason, issued_by="decider", now_ms=now_ms, key=key)


def _diagnosis(state: RolloutState, result: decide.Assessment, now_ms: int) -> Diagnosis:
    spec = state.spec
    return Diagnosis(
        rollout_id=spec.rollout_id,
        window_start_ms=state.origin_ms + (state.windows_closed - 1) * spec.window_ms,
        windows_closed=state.windows_closed, stage=state.stage, fraction=state.fraction,
        action=result.action, verdict=str(result.verdict), message=result.message,
        metrics=[_estimate(e) for e in result.estimates], ts_ms=now_ms)


def _finite(x: float) -> float:
    """JSON has no inf or NaN: clamp infinities, zero NaN (n = 0 says it was empty)."""
    if math.isnan(x):
        return 0.0
    return max(min(x, 1e300), -1e300)


def _estimate(e: decide.MetricEstimate) -> MetricEstimate:
    return MetricEstimate(name=e.name, effect=_finite(e.effect), rel_effect=_finite(e.relative),
                          lower=_finite(e.lower), upper=_finite(e.upper),
                          n_baseline=int(e.n_a), n_canary=int(e.n_b), verdict=str(e.verdict))
