"""PURE: the rollout decision (no Kafka, Faust, Redis, clock).

* :mod:`~streammon.decide.spec` — the one validated path of a rollout spec (``check_spec``);
* :mod:`~streammon.decide.policy` — the rollout policy and :func:`assess_rollout`;
* :mod:`~streammon.decide.progress` — a rollout's progress window after window;
* :mod:`~streammon.decide.strategies` — ramp strategies (canary, linear, blue-green);
* :mod:`~streammon.decide.cell_grid` — cohort summaries as the arrays the statistics take;
* :mod:`~streammon.decide.event_replay` — the join and decider on recorded events
  (behind :func:`streammon.backtest.replay_events`);
* :mod:`~streammon.decide.postmortem` — the post-mortem of a rollback;
* :mod:`~streammon.decide.source_watermarks` — event time across all join partitions.
"""
