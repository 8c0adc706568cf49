"""Benchmark (not a test): cost of one decision after a closed window.

Two paths, measured in the same run on the same cells. The decider's (incremental):
:class:`streammon.decide.assessor.RolloutAssessor` is handed the history after every
window, as the worker and ``replay_events`` do, and folds only the new window; its cost
is the mean over the last 10 windows of a rollout of ``windows`` windows. The full
recompute (the reference): one :func:`streammon.decide.policy.assess_rollout` call over
the whole history. Rollout: 5 metrics (3 binary, 1 latency, 1 rare-error count) x 4
segments; medians of ``--runs`` runs; ``ratio`` = full / incremental at each length.
Times are CPU time of this process (``time.process_time``), so other jobs on the shared
cores inflate them less than wall time. Prints one line of JSON.

    python bench/bench_decide.py [--windows 10 60 200] [--repeat 50] [--runs 5]
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import numpy as np

from streammon.decide.assessor import RolloutAssessor
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


def full_us(policy: RolloutPolicy, cells: dict[str, Arrays], assignment: Arrays,
            repeat: int) -> float:
    """Return microseconds per full-recompute ``assess_rollout`` call on the whole history."""
    assess_rollout(policy, cells, assignment, stage=0, windows_in_stage=1)
    start = time.process_time()
    for _ in range(repeat):
        assess_rollout(policy, cells, assignment, stage=0, windows_in_stage=1)
    return (time.process_time() - start) / repeat * 1e6


def incremental_us(policy: RolloutPolicy, cells: dict[str, Arrays], assignment: Arrays,
                   last: int = 10) -> float:
    """Return microseconds per window of the incremental decider over the last ``last``
    windows of a rollout that gets one more window per call (as the decider does)."""
    windows = assignment["n_b"].shape[0]
    assessor = RolloutAssessor()
    elapsed = 0.0
    for t in range(1, windows + 1):
        head = {m: {f: a[:t] for f, a in arrays.items()} for m, arrays in cells.items()}
        window = {k: v[:t] for k, v in assignment.items()}
        start = time.process_time()
        assessor.assess(policy, head, window, stage=0, windows_in_stage=t)
        if t > windows - last:
            elapsed += time.process_time() - start
    return elapsed / min(last, windows) * 1e6


def measure(windows: int = 200, repeat: int = 50, runs: int = 5) -> dict[str, float]:
    """Return the median microseconds per decision of both paths at ``windows`` windows."""
    policy, cells, assignment = build(windows)
    full = [full_us(policy, cells, assignment, repeat) for _ in range(runs)]
    inc = [incremental_us(policy, cells, assignment) for _ in range(runs)]
    full_med, inc_med = statistics.median(full), statistics.median(inc)
    return {"windows": windows, "metrics": 5, "segments": 4,
            "us_per_window": round(inc_med, 1), "full_recompute_us": round(full_med, 1),
            "ratio": round(full_med / inc_med, 1)}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--windows", type=int, nargs="*", default=[10, 60, 200])
    parser.add_argument("--repeat", type=int, default=50)
    parser.add_argument("--runs", type=int, default=5)
    args = parser.parse_args(argv)
    points = [measure(w, args.repeat, args.runs) for w in args.windows]
    top = points[-1]
    print(json.dumps({"bench": "decide", "unit": "us", "points": points,
                      "decide_us_per_window": top["us_per_window"],
                      "decide_full_recompute_us": top["full_recompute_us"],
                      "decide_ratio": top["ratio"], "decide_windows": top["windows"]}))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
