"""Benchmark (not a test): cost of one decision after a closed window.

The decider calls ``assess_rollout`` with the full history of closed windows, so one
window's update costs one call. Rollout: 5 metrics (3 binary, 1 latency, 1 rare-error
count) x 4 segments; measured at several history lengths. Prints one line of JSON.

    python bench/bench_decide.py [--windows 200] [--repeat 200]
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import numpy as np

from streammon.decide.policy import MetricSpec, RolloutPolicy, assess_rollout
from streammon.sim.cell_draws import draw_cells, make_plan

SEGMENTS = (0.10, 0.11, 0.09, 0.12)


Arrays = dict[str, np.ndarray]


def build(windows: int) -> tuple[RolloutPolicy, dict[str, Arrays], Arrays]:
    plans = {
        "conversion": make_plan("binary", windows=windows, segment_means=SEGMENTS),
        "add_to_cart": make_plan("binary", windows=windows, segment_means=SEGMENTS),
        "click": make_plan("binary", windows=windows, segment_means=SEGMENTS),
        "latency_ms": make_plan("continuous", windows=windows,
                                segment_means=(80.0, 90.0, 100.0, 120.0)),
        "errors": make_plan("count", windows=windows, segment_means=(0.001,) * 4),
    }
    kinds = {"binary": "decrease", "continuous": "increase", "count": "increase"}
    metrics = tuple(MetricSpec(name, plan.kind, kinds[plan.kind])  # type: ignore[arg-type]
                    for name, plan in plans.items())
    cells = {}
    for seed, (name, plan) in enumerate(plans.items()):
        drawn = draw_cells(plan, 1, seed).to_dict()
        cells[name] = {field: arr[0] for field, arr in drawn.items()}
    n = cells["conversion"]
    assignment = {"n_a": n["n_a"], "n_b": n["n_b"], "fraction": np.full(windows, 0.05)}
    return RolloutPolicy(metrics=metrics), cells, assignment


def measure(windows: int = 200, repeat: int = 200) -> dict[str, float]:
    """Return microseconds per ``assess_rollout`` call with ``windows`` closed windows."""
    policy, cells, assignment = build(windows)
    assess_rollout(policy, cells, assignment, stage=0, windows_in_stage=1)
    start = time.perf_counter()
    for _ in range(repeat):
        assess_rollout(policy, cells, assignment, stage=0, windows_in_stage=1)
    elapsed_us = (time.perf_counter() - start) / repeat * 1e6
    return {"windows": windows, "metrics": 5, "segments": 4, "us_per_window": round(elapsed_us, 1)}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--windows", type=int, nargs="*", default=[10, 60, 200])
    parser.add_argument("--repeat", type=int, default=200)
    args = parser.parse_args(argv)
    points = [measure(w, args.repeat) for w in args.windows]
    print(json.dumps({"bench": "decide.assess_rollout", "unit": "us", "points": points}))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
