"""Blue-green with shadow validation, through the decider's pure progression and the real
actuator on Redis: what the route log shows is what routers did."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np

from streammon.config.settings import Settings
from streammon.control.actuator import Actuator
from streammon.control.commands import log_key, make_command
from streammon.control.registry import Checkpoint, Registry, hash_file
from streammon.decide import progress
from streammon.events import CohortSummary, Command, MetricSpecWire, MetricSums, RolloutSpec
from tests.helpers import DECIDER_KEY, OPERATOR_KEY

KEY = DECIDER_KEY
T0_MS = 1_800_000_000_000
WINDOW_MS = 1000


def bg_spec(rollout_id: str) -> RolloutSpec:
    return RolloutSpec(
        rollout_id=rollout_id, baseline="blue", candidate="green", strategy="blue_green",
        validation="shadow", f0=0.5, window_ms=WINDOW_MS, grace_ms=0, step_windows=1,
        min_samples_per_stage=0,
        metrics=[MetricSpecWire(name="latency_ms", kind="continuous", bad_direction="increase",
                                margin=2.0),
                 MetricSpecWire(name="error", kind="binary", bad_direction="increase",
                                margin=0.02)])


def window_summaries(rng: np.random.Generator, rollout_id: str, w: int, *, n: int,
                     latency_shift: float, score_shift: float) -> list[CohortSummary]:
    out = []
    for arm, size in (("baseline", n), ("canary", n // 2)):
        shift = (latency_shift, score_shift) if arm == "canary" else (0.0, 0.0)
        lat = rng.lognormal(np.log(40.0), 0.3, size) + shift[0]
        err = (rng.random(size) < 0.01).astype(float)
        scores = np.clip(rng.beta(2, 5, size) + shift[1], 0, 0.999)
        out.append(CohortSummary(
            rollout_id=rollout_id, window_start_ms=T0_MS + w * WINDOW_MS, window_ms=WINDOW_MS,
            segment="all", arm=arm, source="p0", watermark_ms=T0_MS + (w + 1) * WINDOW_MS,  # type: ignore[arg-type]
            score_hist=np.histogram(scores, bins=10, range=(0, 1))[0].tolist(),
            metrics={"latency_ms": MetricSums(size, float(lat.sum()), float((lat**2).sum())),
                     "error": MetricSums(size, float(err.sum()), float(err.sum()))}))
    return out


def run_blue_green(settings: Settings, client: Any, tmp_path: Path, rollout_id: str, *,
                   latency_shift: float = 0.0, score_shift: float = 0.0,
                   windows: int = 40) -> list[dict[str, Any]]:
    """Start a shadow blue-green rollout, feed it windows until it decides, apply every
    command with the real actuator; return the route log."""
    weights = tmp_path / "blue.bin"
    weights.write_bytes(b"blue weights")
    Registry(client).pin(Checkpoint(version="blue", weights_uri=str(weights), config={},
                                    features=[], environment={},
                                    content_hash=hash_file(weights), pinned_at_ms=0))
    actuator = Actuator(settings=settings, client=client)
    spec = bg_spec(rollout_id)
    start = make_command(rollout_id=rollout_id, seq=1, action="start", baseline="blue",
                                 candidate="green", fraction=0.0, now_ms=T0_MS, key=KEY,
                                 spec=spec)
    assert actuator.apply(start) == "applied"
    state = progress.start_state(start)
    rng = np.random.default_rng(5)
    summaries: list[CohortSummary] = []
    for w in range(windows):
        summaries += window_summaries(rng, rollout_id, w, n=600, latency_shift=latency_shift,
                                      score_shift=score_shift)
        commands = progress.progress(state, summaries, T0_MS + (w + 1) * WINDOW_MS,
                                    now_ms=T0_MS, key=KEY).commands
        for cmd in commands:
            assert actuator.apply(cmd) == "applied"
        if state.phase != "running":
            break
    return route_log(client, rollout_id)


def route_log(client: Any, rollout_id: str) -> list[dict[str, Any]]:
    return [json.loads(r) for r in client.lrange(log_key(rollout_id), 0, -1)]


def test_green_failing_validation_never_gets_traffic(
    settings: Settings, redis_client: Any, tmp_path: Path, unique: str
) -> None:
    """Green that is 15 ms slower on mirrored traffic is rolled back, and at no point did
    any route state send it a single request."""
    log = run_blue_green(settings, redis_client, tmp_path, f"bg-slow-{unique}",
                         latency_shift=15.0)
    assert log[-1]["action"] == "rollback" and "latency_ms" in log[-1]["reason"]
    assert all(entry["weights"] == {"blue": 1.0} for entry in log)


def test_green_with_drifting_scores_is_rolled_back(
    settings: Settings, redis_client: Any, tmp_path: Path, unique: str
) -> None:
    """Green whose shadow scores drift is rolled back by the drift guard before serving."""
    log = run_blue_green(settings, redis_client, tmp_path, f"bg-drift-{unique}",
                         score_shift=0.15)
    assert log[-1]["action"] == "rollback"
    assert "drift" in log[-1]["reason"]
    assert all(entry["weights"] == {"blue": 1.0} for entry in log)


def test_green_passing_switches_in_one_atomic_change(
    settings: Settings, redis_client: Any, tmp_path: Path, unique: str
) -> None:
    """Healthy green is promoted by exactly one route change, from all-blue to all-green."""
    log = run_blue_green(settings, redis_client, tmp_path, f"bg-ok-{unique}")
    assert [e["action"] for e in log] == ["start", "promote"]
    assert log[0]["weights"] == {"blue": 1.0}
    assert log[1]["weights"] == {"green": 1.0}


def test_rollback_after_the_switch_flips_back(
    settings: Settings, redis_client: Any, tmp_path: Path, unique: str
) -> None:
    """An operator's rollback after the switch sends everything back to blue at once."""
    rollout_id = f"bg-flip-{unique}"
    log = run_blue_green(settings, redis_client, tmp_path, rollout_id)
    assert log[-1]["weights"] == {"green": 1.0}
    flip: Command = make_command(
        rollout_id=rollout_id, seq=log[-1]["seq"] + 1, action="rollback", baseline="blue",
        candidate="green", fraction=0.0, now_ms=T0_MS, key=OPERATOR_KEY)
    assert Actuator(settings=settings, client=redis_client).apply(flip) == "applied"
    after = route_log(redis_client, rollout_id)
    assert after[-1]["weights"] == {"blue": 1.0} and after[-1]["phase"] == "rolled_back"
