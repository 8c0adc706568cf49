# ruff: noqa: RUF002  (formulas use Greek letters and math signs)
"""Window arithmetic and the running sums of one cohort cell (the join's hot path).

A cell is one :data:`~streammon.events.CellKey` (rollout, window, segment, arm); its
layout (the sums per metric, the score histogram) is declared in :mod:`streammon.events`.
It keeps, per metric, sufficient statistics *per unit* (DESIGN rule 10;
:class:`~streammon.events.MetricSums`): n units, Σy_u, Σy_u², and for ratio metrics the
excess sums Σ(m_u − 1), Σ(m_u² − 1), Σy_u(m_u − 1). That is all the sequential tests
need; cells merge across partitions and workers by addition.

A request without a ``unit_id`` is its own unit (m_u = 1: the excess sums stay 0).
A unit's requests in its first-exposure window are aggregated: ``latency_ms``, ``label``
and ``value`` as ratio metrics (y_u the unit's total, m_u its number of observations:
the per-request mean Σy/Σm with a delta-method variance,
:func:`streammon.stats.ratio.linearize`), ``error`` as the unit's indicator (did any of
its requests fail), so retry bursts count once.

Metrics come from both sides of the join: ``latency_ms`` and ``error`` are known when
the prediction arrives; ``label`` and ``value`` when its outcome does.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass, field

import msgspec

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


class OpenUnit(msgspec.Struct, array_like=True, gc=False):
    """A unit whose first-exposure cell may still change (its running per-unit sums).

    Its cell, when it freezes (event time, ms: its window's end + ttl), its error and
    timeout indicators (bits 0 and 1; -1 before its first request), then (y_u, m_u) of
    latency, label and value, and its covariate (last: the changelog's unit tuple omits
    it). Not tracked by the garbage collector (no reference cycles), like the join's
    pending entries: a million open units would otherwise make every full collection slow.
    """

    cell: CellKey
    freeze_ms: int
    error: int = -1
    latency_y: float = 0.0
    latency_m: int = 0
    label_y: float = 0.0
    label_m: int = 0
    value_y: float = 0.0
    value_m: int = 0
    x: float | None = None
    """The covariate of the unit's first request (CUPED's x_u; None: the unit counts as 0)."""


def _count_hit(acc: list[float]) -> None:
    """Count an indicator that is 1 (the request or unit had it) in sums holding its n."""
    acc[1] += 1.0
    acc[2] += 1.0


def _count_unit_hit(sums: dict[str, list[float]], metric: str) -> None:
    """Count a unit (or request) whose indicator ``metric`` is 1: n, Σy and Σy² grow by 1.

    For a sparse metric (``timeout``) that counts only its hits; its n comes from another.
    """
    acc = sums.get(metric)
    if acc is None:
        acc = sums[metric] = _zeros()
    acc[0] += 1
    _count_hit(acc)


def _count_latency_bin(sums: dict[str, list[float]], latency_ms: float) -> None:
    """Count one request in its latency bin (a bin counts requests: n only)."""
    name = (_NAME_OF_MS[int(latency_ms)] if latency_ms < _EXACT_FROM_MS
            else _BIN_NAMES[_bin_of(latency_ms)])
    acc = sums.get(name)
    if acc is None:
        acc = sums[name] = _zeros()
    acc[0] += 1


def add_outcome_sums(sums: dict[str, list[float]], label: float | None,
                     value: float | None) -> None:
    """Add a joined outcome of a request that is its own unit: ``label``, ``value``."""
    if label is not None:
        add_request(sums, "label", label)
    if value is not None:
        add_request(sums, "value", value)


def add_request(sums: dict[str, list[float]], metric: str, x: float) -> None:
    """Add observation ``x`` of a request that is its own unit (n, Σy, Σy²)."""
    acc = sums.get(metric)
    if acc is None:
        acc = sums[metric] = _zeros()
    acc[0] += 1
    acc[1] += x
    acc[2] += x * x


def window_start_ms(ts_ms: int, window_ms: int) -> int:
    """Return the start of the tumbling window of width ``window_ms`` that holds ``ts_ms``."""
    return ts_ms - ts_ms % window_ms


@dataclass
class CellState:
    """Running sums of one cell: per metric, its units' sums and the score histogram.

    Per metric ``[n, Σy, Σy², Σ(m−1), Σ(m²−1), Σy(m−1)]`` over its units (``SUMS`` then
    ``RATIO_SUMS`` of :mod:`streammon.events`).
    """

    sums: dict[str, list[float]] = field(default_factory=dict)
    score_hist: list[int] = field(default_factory=lambda: [0] * SCORE_BINS)
    expired: int = 0

    def add(self, metric: str, x: float) -> None:
        """Add one observation of ``metric``."""
        add_request(self.sums, metric, x)

    def add_prediction(self, pred: Prediction) -> None:
        """Add what a prediction tells on its own: latency, error flag, score (hot path)."""
        sums = self.sums
        latency_ms = pred.latency_ms
        if latency_ms is not None:
            acc = sums.get("latency_ms") or sums.setdefault("latency_ms", _zeros())
            acc[0] += 1
            acc[1] += latency_ms
            acc[2] += latency_ms * latency_ms
            _count_latency_bin(sums, latency_ms)
        acc = sums.get("error") or sums.setdefault("error", _zeros())
        acc[0] += 1
        if pred.error:
            _count_hit(acc)
        if pred.timeout:  # sparse: the decider takes the metric's n from ``error``'s
            _count_unit_hit(sums, "timeout")
        if pred.score is not None:
            self.score_hist[min(int(pred.score * SCORE_BINS), SCORE_BINS - 1)] += 1

    def add_unit_prediction(self, pred: Prediction, unit: OpenUnit) -> None:
        """Add a prediction of a unit in its first-exposure cell (aggregated per unit).

        ``unit.error`` holds the unit's two indicators: bit 0 had an error, bit 1 timed out.
        """
        sums = self.sums
        latency_ms = pred.latency_ms
        if latency_ms is not None:
            if not unit.latency_m:  # the tail test's draw is the unit: its first latency
                _count_latency_bin(sums, latency_ms)
            self.add_unit(sums, "latency_ms", latency_ms, unit.latency_y, unit.latency_m)
            unit.latency_y += latency_ms
            unit.latency_m += 1
        acc = sums.get("error") or sums.setdefault("error", _zeros())
        if unit.error < 0:  # the unit's first request: it enters the error metric
            unit.error = 0
            acc[0] += 1
        if pred.error and not unit.error & 1:
            unit.error |= 1
            _count_hit(acc)
        if pred.timeout and not unit.error & 2:  # n from ``error``'s, as for requests
            unit.error |= 2
            _count_unit_hit(sums, "timeout")
        if pred.score is not None:
            self.score_hist[min(int(pred.score * SCORE_BINS), SCORE_BINS - 1)] += 1

    @staticmethod
    def add_unit(sums: dict[str, list[float]], metric: str, x: float, y: float,
                 m: int) -> None:
        """Add observation ``x`` of a unit whose (y_u, m_u) was (y, m) to the cell's sums.

        The caller then adds x to y_u and 1 to m_u. The unit contributes (1, y, y², m−1,
        m²−1, y(m−1)) once it has an observation, so the change is the difference of its
        contributions after and before.
        """
        acc = sums.get(metric) or sums.setdefault(metric, _zeros())
        y2 = y + x
        acc[1] += x
        if m == 0:
            acc[0] += 1
            acc[2] += x * x
            return
        acc[2] += y2 * y2 - y * y
        acc[3] += 1
        acc[4] += 2 * m + 1
        acc[5] += y2 * m - y * (m - 1)

    def add_unit_covariate(self, metric: str, outcome: float, y: float, m: int,
                           x: float) -> None:
        """Add a unit's covariate sums for one ``outcome`` of ``metric`` (CUPED, per unit).

        The unit's y_u was ``y`` over ``m`` outcomes before this one. ``<metric>:x`` counts
        the unit once (n, x_u, x_u²) and ``<metric>:xy`` holds (n, Σ x_u y_u, Σ (x_u y_u)²)
        over units, kept current as y_u grows. Call before adding ``outcome`` to (y, m).
        """
        sums = self.sums
        xy_name = covariate_metric(metric, "xy")
        xy = sums.get(xy_name) or sums.setdefault(xy_name, _zeros())
        y2 = y + outcome
        if m == 0:
            add_request(sums, covariate_metric(metric, "x"), x)
            xy[0] += 1
        xy[1] += x * outcome
        xy[2] += x * x * (y2 * y2 - y * y)

    def add_covariate(self, label: float | None, value: float | None, x: float) -> None:
        """Add the covariate sums of a joined request that is its own unit.

        That is :meth:`add_unit_covariate` of a unit with no outcome before (y_u = 0, m = 0).
        """
        for metric, y in (("label", label), ("value", value)):
            if y is not None:
                self.add_unit_covariate(metric, y, 0.0, 0, x)

    def __iadd__(self, other: CellState) -> CellState:
        for metric, values in other.sums.items():
            acc = self.sums.setdefault(metric, _zeros())
            for i, x in enumerate(values):
                acc[i] += x
        self.score_hist = [a + b for a, b in zip(self.score_hist, other.score_hist, strict=True)]
        self.expired += other.expired
        return self

    def metric_sums(self) -> dict[str, MetricSums]:
        """Return the sums as immutable MetricSums, per metric."""
        return {m: MetricSums(int(v[0]), *v[1:]) for m, v in self.sums.items()}

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
        sums = {m: [ms.n, ms.sum, ms.sumsq, ms.dm, ms.dm2, ms.dym]
                for m, ms in summary.metrics.items()}
        return cls(sums=sums, score_hist=list(summary.score_hist), expired=summary.expired)


def _zeros() -> list[float]:
    return [0, 0.0, 0.0, 0.0, 0.0, 0.0]


def merge_summaries(summaries: Iterable[CohortSummary]) -> dict[CellKey, CellState]:
    """Add up summaries from all sources into one CellState per cell."""
    merged: dict[CellKey, CellState] = {}
    for s in summaries:
        merged.setdefault(s.cell, CellState()).__iadd__(CellState.from_summary(s))
    return merged
