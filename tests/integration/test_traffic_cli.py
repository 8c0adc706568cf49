"""`streammon traffic`, the compose file's traffic generator, against running services."""

from __future__ import annotations

import json
from typing import Any

from streammon.config.settings import Settings
from streammon.control.commands import route_key
from streammon.kafka.topics import apply_topics


def test_traffic_generator_drives_a_rollout_to_a_rollback(
    settings: Settings, spawn: Any, redis_client: Any, unique: str
) -> None:
    """The traffic command pins the baseline, starts the rollout, serves traffic that
    regresses, and exits 0 once the worker and actuator have rolled it back."""
    apply_topics(settings.kafka, settings.topics)
    spawn("worker", "--window-ms", "1000")
    spawn("actuator")
    rid = f"traffic-{unique}"
    proc = spawn("traffic", "--rollout-id", rid, "--regression-at-s", "8", "--rate-per-s", "400",
                 "--duration-s", "120", "--window-ms", "2000")
    assert proc.wait(timeout=150) == 0
    state = json.loads(redis_client.get(route_key(rid)))
    assert state["phase"] == "rolled_back" and state["weights"] == {state["baseline"]: 1.0}
