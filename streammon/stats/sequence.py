"""Replay: run one metric's sequential test over recorded cells and return per-window verdicts.

This is the entry point for simulation, backtesting and tuning. It is a pure function of
the arrays: the verdict after window t depends only on windows 0..t, a look is taken
after every window, and "rollback" and "promote" are absorbing.
"""

from __future__ import annotations

import math
from collections.abc import Mapping

from streammon.stats.cells import (
    DIRECTIONS,
    KINDS,
    Cells,
    StatsInputError,
    as_cells,
    check_alpha,
    check_choice,
)
from streammon.stats.counts import DEFAULT_PRIOR_SD
from streammon.stats.meandiff import DEFAULT_TAU_REL, compute_mean_diff
from streammon.stats.rates import compute_rate_test
from streammon.stats.result import VERDICT_NAMES, SequenceResult


def replay(
    cells: Mapping[str, object],
    kind: str = "binary",
    bad_direction: str = "decrease",
    alpha: float = 0.05,
    margin: float = 0.0,
    *,
    tau_rel: float = DEFAULT_TAU_REL,
    prior_sd: float = DEFAULT_PRIOR_SD,
) -> list[str]:
    """Return one verdict per window: ``"continue"``, ``"rollback"`` or ``"promote"``.

    ``cells`` maps ``n_a, sum_a, sumsq_a`` (baseline) and ``n_b, sum_b, sumsq_b``
    (canary) to arrays shaped ``(windows, segments)``, per window (not cumulative).
    ``kind`` is ``"binary"`` or ``"continuous"`` (matched-cohort mixture SPRT, see
    :mod:`streammon.stats.meandiff`) or ``"count"`` (sum = events, n = exposures; exact
    conditional binomial e-process, see :mod:`streammon.stats.rates`). Rollback when harm
    in ``bad_direction`` is shown at level ``alpha``; promote when harm beyond ``margin``
    (absolute, metric units) is excluded. Raises :class:`StatsInputError` on bad input.
    """
    data = as_cells(cells, kind)
    if data.n_a.ndim != 2:
        raise StatsInputError(
            f"cells arrays must be 2-D (windows, segments); got shape {data.shape}"
        )
    result = compute_sequence(data, kind=kind, bad_direction=bad_direction, alpha=alpha,
                              margin=margin, tau_rel=tau_rel, prior_sd=prior_sd)
    return [VERDICT_NAMES[int(code)] for code in result.verdict_codes()]


def compute_sequence(
    cells: Cells,
    *,
    kind: str,
    bad_direction: str,
    alpha: float,
    margin: float = 0.0,
    tau_rel: float = DEFAULT_TAU_REL,
    prior_sd: float = DEFAULT_PRIOR_SD,
    tau_min: float = 0.0,
) -> SequenceResult:
    """Run the test for ``kind`` on validated cells of any leading (replicate) shape.

    ``tau_min`` (metric units) is a floor on the normal mixture's scale τ; the promotion
    check passes the margin, so its boundary is tight near the effects that matter there.
    """
    check_parameters(kind, bad_direction, alpha, margin)
    if not (tau_rel > 0 and prior_sd > 0):
        raise StatsInputError("tau_rel and prior_sd must be > 0 (defaults: 0.05 and 0.5)")
    if kind == "count":
        return compute_rate_test(cells, bad_direction=bad_direction, alpha=alpha,
                                 margin=margin, prior_sd=prior_sd)
    return compute_mean_diff(cells, kind=kind, bad_direction=bad_direction, alpha=alpha,
                             margin=margin, tau_rel=tau_rel, tau_min=tau_min)


def check_parameters(kind: str, bad_direction: str, alpha: float, margin: float) -> None:
    """Raise :class:`StatsInputError` naming the parameter that is out of range."""
    check_choice("kind", kind, KINDS)
    check_choice("bad_direction", bad_direction, DIRECTIONS)
    check_alpha("alpha", alpha)
    if not (math.isfinite(float(margin)) and float(margin) >= 0.0):
        raise StatsInputError(
            f"margin={margin!r} must be a finite number >= 0 in the metric's units "
            "(the harm the canary may do and still be promoted)"
        )
