"""PURE: vectorized anytime-valid statistics for canary rollouts.

Everything here takes numpy arrays and returns numbers and decisions: no Kafka, no
Redis, no clocks. Modules, one concept each:

* :mod:`~streammon.stats.cells` — per-(window, segment, arm) sufficient statistics;
* :mod:`~streammon.stats.confseq` — normal-mixture boundaries (mSPRT, Howard et al.);
* :mod:`~streammon.stats.meandiff` — matched-cohort mean difference (binary, continuous);
* :mod:`~streammon.stats.counts`, :mod:`~streammon.stats.rates` — exact rare-event tests;
* :mod:`~streammon.stats.srm` — sequential sample-ratio mismatch;
* :mod:`~streammon.stats.drift` — prediction drift over score histograms;
* :mod:`~streammon.stats.sequence` — one metric's verdicts over recorded cells;
* :mod:`~streammon.stats.evidence` — one metric's evidence for the decider (e-values, bounds);
* :mod:`~streammon.stats.horizon` — attribution horizons and frozen cohorts;
* :mod:`~streammon.stats.assignment` — the assignment counts the decider checks;
* :mod:`~streammon.stats.naive` — the repeated fixed-horizon rule, for comparison;
* :mod:`~streammon.sim.cell_draws`, :mod:`~streammon.sim.operating_points` — seeded rollouts
  and the operating-characteristics table of ``docs/statistics.md``;
* :mod:`~streammon.ops.backtest` — replay on a CSV (``streammon backtest FILE``).
"""

from streammon.stats.cells import Cells, StatsInputError, as_cells
from streammon.stats.drift import DriftResult, compute_drift
from streammon.stats.naive import naive_rollback
from streammon.stats.result import SequenceResult
from streammon.stats.sequence import compute_sequence, replay
from streammon.stats.srm import SrmResult, compute_srm

__all__ = [
    "Cells",
    "DriftResult",
    "SequenceResult",
    "SrmResult",
    "StatsInputError",
    "as_cells",
    "compute_drift",
    "compute_sequence",
    "compute_srm",
    "naive_rollback",
    "replay",
]
