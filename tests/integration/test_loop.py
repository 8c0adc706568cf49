"""The whole loop on the embedded stack, judged by what the routers read from Redis."""

from __future__ import annotations

import json
from typing import Any

from conftest import LoopRun

from streammon.control.commands import log_key, route_key


def route(client: Any, rollout_id: str) -> dict[str, Any]:
    raw = client.get(route_key(rollout_id))
    assert raw is not None, "no route state in Redis"
    return dict(json.loads(raw))


def applied_actions(client: Any, rollout_id: str) -> list[str]:
    return [json.loads(r)["action"] for r in client.lrange(log_key(rollout_id), 0, -1)]


def test_regression_is_rolled_back(regression_run: LoopRun, redis_client: Any) -> None:
    """A canary that regresses mid-ramp ends with 100% of traffic on the pinned baseline."""
    state = route(redis_client, regression_run.rollout_id)
    assert state["phase"] == "rolled_back", (regression_run.work_dir / "timeline.txt")
    assert state["weights"] == {state["baseline"]: 1.0}
    actions = applied_actions(redis_client, regression_run.rollout_id)
    assert actions[0] == "start" and actions[-1] == "rollback"
    assert regression_run.exit_code == 0


def test_rollback_came_after_the_regression(regression_run: LoopRun, redis_client: Any) -> None:
    """The ramp stepped up while the canary was healthy: the rollback is not a false alarm
    from the first windows."""
    actions = applied_actions(redis_client, regression_run.rollout_id)
    assert "step" in actions[: actions.index("rollback")]


def test_healthy_candidate_is_promoted(healthy_run: LoopRun, redis_client: Any) -> None:
    """A healthy canary is ramped to f_max and promoted to 100% of traffic."""
    state = route(redis_client, healthy_run.rollout_id)
    assert state["phase"] == "promoted"
    assert state["weights"] == {state["candidate"]: 1.0}
    actions = applied_actions(redis_client, healthy_run.rollout_id)
    assert actions.count("step") == 3 and actions[-1] == "promote"
    assert healthy_run.exit_code == 0
