"""PURE: the stream-stream join of predictions and outcomes (no Kafka, Faust, Redis, clock).

* :mod:`~streammon.join.state` — :class:`JoinState`, one partition's join;
* :mod:`~streammon.join.cells` — window arithmetic and one cohort cell's sums;
* :mod:`~streammon.join.changelog` — one changelog record per batch, and recovery from them.
"""
