"""A deterministic join workload and the cohort statistics it must produce.

Used by ``make bench`` and the exactness tests: :func:`generate` yields predictions
and outcomes (and some duplicate outcomes) in event-time order, the order a serving
fleet publishes them; :func:`compute_truth` computes, straight from the workload, the
cells an exact join must end with, including which predictions expire unlabelled.
All values are multiples of 1/4, so sums and sums of squares are exact in floating
point whatever order the join adds them in, and results compare with ``==``.
"""

from __future__ import annotations

import heapq
import random
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from streammon.events import CellKey
from streammon.join.cells import CellState, window_start_ms
from streammon.kafka.partitioner import partition_for

Event = tuple[str, dict[str, Any]]
"""("prediction" | "outcome", fields)."""


@dataclass(frozen=True, kw_only=True)
class JoinWorkload:
    """The shape of a workload: size, timing, and how often outcomes and duplicates occur."""

    n_predictions: int
    rollout_id: str = "bench"
    seed: int = 7
    t0_ms: int = 1_700_000_000_000
    step_ms: int = 1
    window_ms: int = 10_000
    ttl_ms: int = 60_000
    max_delay_ms: int = 5_000
    outcome_every: int = 10
    """Every ``outcome_every``-th prediction gets no outcome (10 -> 90% labelled)."""
    duplicate_every: int = 97
    segments: tuple[str, ...] = ("mobile", "desktop")
    units: int = 0
    """Distinct ``unit_id`` s cycled through (0: predictions carry none)."""


def _prediction(w: JoinWorkload, i: int, rng: random.Random) -> dict[str, Any]:
    arm = "canary" if i % 4 == 0 else "baseline"
    fields = {"request_id": f"req-{w.seed}-{i}", "rollout_id": w.rollout_id,
              "model_version": f"m-{arm}", "arm": arm, "ts_ms": w.t0_ms + i * w.step_ms,
              "segment": w.segments[i % len(w.segments)], "score": rng.randrange(0, 5) / 4,
              "latency_ms": rng.randrange(4, 200) / 4, "error": rng.random() < 0.01}
    if w.units:
        fields["unit_id"] = f"unit-{i % w.units}"
    return fields


def _outcome(w: JoinWorkload, pred: dict[str, Any], rng: random.Random) -> dict[str, Any]:
    label_p = 0.35 if pred["arm"] == "canary" else 0.3
    return {"request_id": pred["request_id"], "rollout_id": w.rollout_id,
            "ts_ms": pred["ts_ms"] + rng.randrange(1, w.max_delay_ms),
            "label": float(rng.random() < label_p), "value": rng.randrange(0, 400) / 4}


def generate(w: JoinWorkload) -> Iterator[Event]:
    """Yield the workload's events in event-time order (outcomes after their predictions)."""
    rng = random.Random(w.seed)
    waiting: list[tuple[int, int, dict[str, Any]]] = []
    for i in range(w.n_predictions):
        pred = _prediction(w, i, rng)
        while waiting and waiting[0][0] <= pred["ts_ms"]:
            _, j, out = heapq.heappop(waiting)
            yield from _with_duplicate(w, j, out)
        yield "prediction", pred
        if i % w.outcome_every:
            out = _outcome(w, pred, rng)
            heapq.heappush(waiting, (out["ts_ms"], i, out))
    while waiting:
        _, j, out = heapq.heappop(waiting)
        yield from _with_duplicate(w, j, out)


def _with_duplicate(w: JoinWorkload, i: int, out: dict[str, Any]) -> Iterator[Event]:
    yield "outcome", out
    if i % w.duplicate_every == 0:
        yield "outcome", out


def count_events(w: JoinWorkload) -> int:
    """Return how many events :func:`generate` yields (duplicates included)."""
    labelled = [i for i in range(w.n_predictions) if i % w.outcome_every]
    return w.n_predictions + len(labelled) + sum(1 for i in labelled if i % w.duplicate_every == 0)


def compute_truth(w: JoinWorkload, partitions: int) -> dict[CellKey, CellState]:
    """Return the cells an exact join of the workload ends with (over ``partitions``)."""
    cells: dict[CellKey, CellState] = {}
    preds: dict[str, dict[str, Any]] = {}
    labelled: set[str] = set()
    high_ms = [[0, 0] for _ in range(partitions)]  # per partition: max prediction/outcome ts
    for kind, ev in generate(w):
        part = high_ms[partition_for(ev["request_id"].encode(), partitions)]
        side = 0 if kind == "prediction" else 1
        part[side] = max(part[side], ev["ts_ms"])
        if kind == "prediction":
            preds[ev["request_id"]] = ev
            _cell(cells, w, ev).add_prediction(_as_prediction(ev))
        elif ev["request_id"] not in labelled:
            labelled.add(ev["request_id"])
            cell = _cell(cells, w, preds[ev["request_id"]])
            cell.add("label", ev["label"])
            cell.add("value", ev["value"])
    for rid, pred in preds.items():
        part = high_ms[partition_for(rid.encode(), partitions)]
        if rid not in labelled and pred["ts_ms"] + w.ttl_ms <= min(part):
            _cell(cells, w, pred).expired += 1
    return cells


def _cell(cells: dict[CellKey, CellState], w: JoinWorkload, pred: dict[str, Any]) -> CellState:
    key: CellKey = (pred["rollout_id"], window_start_ms(pred["ts_ms"], w.window_ms),
                    pred["segment"], pred["arm"])
    return cells.setdefault(key, CellState())


def _as_prediction(fields: dict[str, Any]) -> Any:
    from streammon.events import Prediction

    return Prediction(**fields)


def diff_cells(got: dict[CellKey, CellState], want: dict[CellKey, CellState]) -> list[str]:
    """Return a line per cell whose statistics differ (empty when the join was exact)."""
    lines = []
    for key in sorted(set(got) | set(want), key=str):
        a, b = got.get(key), want.get(key)
        if a is None or b is None or a.sums != b.sums or a.score_hist != b.score_hist \
                or a.expired != b.expired:
            lines.append(f"{key}: got {a} want {b}")
    return lines
