"""The post-mortem of a rollback: what failed, how the evidence grew, what was restored.

On every rollback the decider builds a :class:`~streammon.events.RollbackReport` from the
same matched cells it judged: each metric's effect and confidence bounds after every
window (the running confidence sequence), the per-segment breakdown at the moment of
the decision, the drift and sample-ratio p-values, the command timeline and the pinned
version traffic went back to. It goes to the rollbacks topic; ``streammon rollout
diagnose ID`` prints it or writes it to a file. Pure.
"""

from __future__ import annotations

import numpy as np

from streammon.decide import cell_grid
from streammon.decide.policy import Assessment, MetricSpec, RolloutPolicy
from streammon.events import CommandNote as CommandNote
from streammon.events import (
    EffectPoint,
    MetricHistory,
    RollbackReport,
    RolloutSpec,
    Verdict,
    json_number,
)
from streammon.stats import as_cells, compute_sequence


def _sequence(spec: MetricSpec, cells: dict[str, np.ndarray],
              alpha: float) -> list[EffectPoint]:
    seq = compute_sequence(as_cells(cells, spec.kind), kind=spec.kind,
                           bad_direction=spec.bad_direction, alpha=alpha, margin=spec.margin)
    return [EffectPoint(t, json_number(seq.effect[t]), json_number(seq.lower[t]),
                        json_number(seq.upper[t]))
            for t in range(seq.effect.shape[-1])]


def metric_history(spec: MetricSpec, grid: cell_grid.Grid, alpha: float,
                   failed: bool) -> MetricHistory:
    """Return one metric's bounds over time and its last estimate in every segment."""
    cells = grid.cells[spec.name]
    by_segment = {}
    for j, segment in enumerate(grid.segments):
        column = {f: a[:, j:j + 1] for f, a in cells.items()}
        by_segment[segment] = _sequence(spec, column, alpha)[-1]
    return MetricHistory(name=spec.name, failed=failed, overall=_sequence(spec, cells, alpha),
                         by_segment=by_segment)


def build_rollback_report(
    spec: RolloutSpec, policy: RolloutPolicy, grid: cell_grid.Grid,
    result: Assessment, *, drift_p: float, windows_closed: int,
    commands: list[CommandNote], now_ms: int,
) -> RollbackReport:
    """Return the post-mortem of the rollback that ``result`` orders."""
    failed = {e.name for e in result.estimates if e.verdict == Verdict.ROLLBACK}
    histories = [metric_history(m, grid, policy.metric_alpha, m.name in failed)
                 for m in policy.metrics]
    return RollbackReport(
        rollout_id=spec.rollout_id, reason=result.message, ts_ms=now_ms,
        restored_version=spec.baseline, candidate=spec.candidate, windows_closed=windows_closed,
        metrics=histories, drift_p_value=drift_p,
        srm_p_value=json_number(result.srm_p_value, 1.0),
        commands=list(commands))


def render_text(report: RollbackReport) -> str:
    """Return a plain-text post-mortem a person can read in a terminal or a ticket.

    Effects and bounds are worded as on the demo's window lines and in ``rollout
    status`` (:mod:`streammon.ops.effect_text`): the same metric names and units, and
    bounds that no longer describe the latest effect are flagged, never shown crossed.
    """
    from streammon.ops.effect_text import format_estimate

    lines = [f"rollback of {report.rollout_id}: {report.reason}",
             f"traffic restored to the pinned version {report.restored_version} "
             f"(candidate {report.candidate}) after {report.windows_closed} windows",
             f"drift p = {report.drift_p_value:.3g}, sample-ratio p = {report.srm_p_value:.3g}",
             "per metric: the effect over the whole rollout [running confidence bounds], "
             "then per segment"]
    for m in report.metrics:
        last = m.overall[-1] if m.overall else EffectPoint(0, 0.0, 0.0, 0.0)
        flag = "FAILED" if m.failed else "ok"
        lines.append(f"  {flag:6s} {format_estimate(m.name, last.effect, last.lower, last.upper)}")
        for segment, p in sorted(m.by_segment.items()):
            lines.append(f"           {segment}: "
                         f"{format_estimate(m.name, p.effect, p.lower, p.upper)}")
    lines.append("commands:")
    lines += [f"  seq {c.seq:3d} {c.action:8s} {c.fraction:5.0%}  by {c.issued_by}  "
              f"at {c.ts_ms}" for c in report.commands]
    return "\n".join(lines)
