"""Window arithmetic and the running sums of one cohort cell (the join's hot path).

A cell is one :data:`~streammon.events.CellKey` (rollout, window, segment, arm); its
layout (the sums per metric, the score histogram) is declared in :mod:`streammon.events`.
That is all the sequential tests need; cells merge across partitions and workers by
addition. Metrics come from both sides of the join: ``latency_ms`` and ``error`` are known
when the prediction arrives; ``label`` and ``value`` when its outcome does.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass, field

from streammon.events import SCORE_BINS, CellKey, CohortSummary, MetricSums, Prediction

LATENCY_BINS_PER_DECADE = 10
LATENCY_BINS = 51
"""Latency bins, ten per decade: bin k holds the latencies x with ``⌊10·log10 m⌋ = k``,
where m is x's whole milliseconds below 10 s (a table lookup on the join's hot path) and
x itself above; below 1 ms is bin 0 and 100 s or more bin 50. Kept as metrics
``latency_ms#k`` (n = count) for the tail test of :mod:`streammon.decide.tail`."""
_EXACT_FROM_MS = 10_000


def _bin_of(latency_ms: float) -> int:
    if latency_ms < 1.0:
        return 0
    return min(int(LATENCY_BINS_PER_DECADE * math.log10(latency_ms)), LATENCY_BINS - 1)


_BIN_OF_MS = tuple(_bin_of(ms) for ms in range(_EXACT_FROM_MS))


def latency_bin(latency_ms: float) -> int:
    """Return the bin of a latency (see :data:`LATENCY_BINS`)."""
    if latency_ms < _EXACT_FROM_MS:
        return _BIN_OF_MS[int(latency_ms)]
    return _bin_of(latency_ms)


def latency_bin_metric(k: int) -> str:
    """Return the metric name under which a cell counts the requests of latency bin ``k``."""
    return f"latency_ms#{k}"


def covariate_metric(metric: str, part: str) -> str:
    """Return the name of an outcome metric's covariate sums: ``label:x``, ``label:xy``."""
    return f"{metric}:{part}"


_BIN_NAMES = tuple(latency_bin_metric(k) for k in range(LATENCY_BINS))
_NAME_OF_MS = tuple(_BIN_NAMES[k] for k in _BIN_OF_MS)


def window_start_ms(ts_ms: int, window_ms: int) -> int:
    """Return the start of the tumbling window of width ``window_ms`` that holds ``ts_ms``."""
    return ts_ms - ts_ms % window_ms


@dataclass
class CellState:
    """Mutable running sums of one cell: per metric [n, Σx, Σx²] (``SUMS``), score histogram."""

    sums: dict[str, list[float]] = field(default_factory=dict)
    score_hist: list[int] = field(default_factory=lambda: [0] * SCORE_BINS)
    expired: int = 0

    def add(self, metric: str, x: float) -> None:
        """Add one observation of ``metric``."""
        acc = self.sums.get(metric)
        if acc is None:
            acc = self.sums[metric] = [0, 0.0, 0.0]
        acc[0] += 1
        acc[1] += x
        acc[2] += x * x

    def add_prediction(self, pred: Prediction) -> None:
        """Add what a prediction tells on its own: latency, error flag, score (hot path)."""
        sums = self.sums
        latency_ms = pred.latency_ms
        if latency_ms is not None:
            acc = sums.get("latency_ms") or sums.setdefault("latency_ms", [0, 0.0, 0.0])
            acc[0] += 1
            acc[1] += latency_ms
            acc[2] += latency_ms * latency_ms
            name = (_NAME_OF_MS[int(latency_ms)] if latency_ms < _EXACT_FROM_MS
                    else _BIN_NAMES[_bin_of(latency_ms)])
            bin_acc = sums.get(name)
            if bin_acc is None:
                bin_acc = sums[name] = [0, 0.0, 0.0]
            bin_acc[0] += 1  # a bin counts requests: n only
        acc = sums.get("error") or sums.setdefault("error", [0, 0.0, 0.0])
        acc[0] += 1
        if pred.error:
            acc[1] += 1.0
            acc[2] += 1.0
        if pred.timeout:  # sparse: the decider takes the metric's n from ``error``'s
            acc = sums.get("timeout") or sums.setdefault("timeout", [0, 0.0, 0.0])
            acc[0] += 1
            acc[1] += 1.0
            acc[2] += 1.0
        if pred.score is not None:
            self.score_hist[min(int(pred.score * SCORE_BINS), SCORE_BINS - 1)] += 1

    def add_covariate(self, label: float | None, value: float | None, x: float) -> None:
        """Add a joined request's covariate sums for CUPED.

        ``<metric>:x`` holds n, Σx, Σx² and ``<metric>:xy`` n, Σxy, Σ(xy)², over the
        outcomes whose prediction had a covariate.
        """
        for metric, y in (("label", label), ("value", value)):
            if y is not None:
                self.add(covariate_metric(metric, "x"), x)
                self.add(covariate_metric(metric, "xy"), x * y)

    def __iadd__(self, other: CellState) -> CellState:
        for metric, (n, s, ss) in other.sums.items():
            acc = self.sums.setdefault(metric, [0, 0.0, 0.0])
            acc[0] += n
            acc[1] += s
            acc[2] += ss
        self.score_hist = [a + b for a, b in zip(self.score_hist, other.score_hist, strict=True)]
        self.expired += other.expired
        return self

    def metric_sums(self) -> dict[str, MetricSums]:
        """Return the sums as immutable MetricSums, per metric."""
        return {m: MetricSums(int(n), s, ss) for m, (n, s, ss) in self.sums.items()}

    def to_summary(
        self, key: CellKey, *, window_ms: int, source: str, watermark_ms: int
    ) -> CohortSummary:
        """Return the cumulative summary of this cell, ready to send."""
        rollout_id, start_ms, segment, arm = key
        return CohortSummary(
            rollout_id=rollout_id,
            window_start_ms=start_ms,
            window_ms=window_ms,
            segment=segment,
            arm=arm,
            source=source,
            metrics=self.metric_sums(),
            score_hist=list(self.score_hist),
            watermark_ms=watermark_ms,
            expired=self.expired,
        )

    @classmethod
    def from_summary(cls, summary: CohortSummary) -> CellState:
        """Rebuild a cell from its cumulative summary (used when recovering state)."""
        sums = {m: [ms.n, ms.sum, ms.sumsq] for m, ms in summary.metrics.items()}
        return cls(sums=sums, score_hist=list(summary.score_hist), expired=summary.expired)


def merge_summaries(summaries: Iterable[CohortSummary]) -> dict[CellKey, CellState]:
    """Add up summaries from all sources into one CellState per cell."""
    merged: dict[CellKey, CellState] = {}
    for s in summaries:
        merged.setdefault(s.cell, CellState()).__iadd__(CellState.from_summary(s))
    return merged
