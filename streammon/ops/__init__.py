"""Operating streammon: what people run to look at rollouts.

* :mod:`~streammon.ops.status` — ``streammon rollout status``;
* :mod:`~streammon.ops.effect_text` — how an effect and its bounds read to people;
* :mod:`~streammon.ops.report` and :mod:`~streammon.ops.report_charts` — ``streammon report``;
* :mod:`~streammon.ops.rollout_feed` — one rollout's history from the topics;
* :mod:`~streammon.ops.rollout_grid` — its cells as the decider lays them out, and the
  sample-ratio check (shared by status and report);
* :mod:`~streammon.ops.backtest` — ``streammon backtest FILE`` and ``--spec`` (events);
* :mod:`~streammon.ops.prometheus` — Prometheus collectors of the worker and the actuator.
"""
