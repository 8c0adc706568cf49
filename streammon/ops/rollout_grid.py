"""One rollout's cells rebuilt from its topics, and the sample-ratio check over them.

``streammon report`` (:mod:`streammon.ops.report_analysis`) and ``streammon rollout
status`` (:mod:`streammon.ops.status`) both start here: the start command's spec, the
decider's state after the commands, the cells of the closed windows laid out as the
decider lays them out (:func:`streammon.decide.progress.build_cells`) and its policy.
Pure computations, no I/O.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from streammon.decide import cell_grid, progress
from streammon.decide.policy import RolloutPolicy, steady_windows
from streammon.errors import ConfigError
from streammon.events import CohortSummary, Command, Diagnosis, RolloutSpec
from streammon.stats import compute_srm


@dataclass(frozen=True)
class RolloutGrid:
    """A rollout as the decider sees it after its last diagnosed window."""

    start: Command
    spec: RolloutSpec
    windows: int
    state: progress.RolloutState
    grid: cell_grid.Grid
    policy: RolloutPolicy


def rollout_grid(rollout_id: str, summaries: list[CohortSummary], commands: list[Command],
                 diagnoses: list[Diagnosis]) -> RolloutGrid:
    """Return the rollout's grid; raise ConfigError without a start command carrying a spec."""
    start = next((c for c in commands if c.action == "start" and c.spec is not None), None)
    if start is None or start.spec is None:
        raise ConfigError(f"rollout {rollout_id!r}: no start command with a spec on the "
                          "control topic, so its metrics and windows are unknown")
    windows = max([d.windows_closed for d in diagnoses] or [0])
    state = progress.state_after(start, commands, windows)
    return RolloutGrid(start=start, spec=start.spec, windows=windows, state=state,
                       grid=progress.build_cells(state, summaries, windows),
                       policy=progress.policy_from_spec(start.spec))


@dataclass(frozen=True)
class SrmCheck:
    """The sample-ratio check over windows at a steady split (none: ``windows == 0``)."""

    p_value: float
    alpha: float
    observed: float
    intended: float
    windows: int

    @property
    def mismatch(self) -> bool:
        """True when the router's split differs from the intended one (halts the rollout)."""
        return self.windows > 0 and self.p_value <= self.alpha


def srm_check(assignment: dict[str, np.ndarray], alpha: float) -> SrmCheck:
    """Return the sample-ratio check over the windows at a steady split."""
    n_a, n_b, frac = steady_windows(assignment["n_a"], assignment["n_b"],
                                    assignment["fraction"])
    total = n_a + n_b
    steady = int((total > 0).sum())
    if steady == 0:
        return SrmCheck(1.0, alpha, float("nan"), float("nan"), 0)
    p = float(compute_srm(n_a, n_b, frac, alpha=alpha).p_value[-1])
    return SrmCheck(p, alpha, float(n_b.sum() / total.sum()),
                    float((frac * total).sum() / total.sum()), steady)
