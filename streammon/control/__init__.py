"""Control: signed commands and what carries them out.

* :mod:`~streammon.control.commands` — PURE: signed, sequenced commands, route state, phases;
* :mod:`~streammon.control.actuator` — control topic -> Redis route state;
* :mod:`~streammon.control.operator_commands` — start a rollout, steer it by hand;
* :mod:`~streammon.control.registry` — pinned checkpoints in Redis;
* :mod:`~streammon.control.mlflow_registry` — optional MLflow Model Registry adapter.
"""
