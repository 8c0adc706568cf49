"""Builders for events used across unit tests."""

from __future__ import annotations

from typing import Any

from streammon.events import Outcome, Prediction


def pred(request_id: str, ts_ms: int = 1_000, **kw: Any) -> Prediction:
    fields: dict[str, Any] = {"rollout_id": "r1", "model_version": "v2", "arm": "canary",
                              "segment": "all", "latency_ms": 10.0}
    fields.update(kw)
    return Prediction(request_id=request_id, ts_ms=ts_ms, **fields)


def outcome(request_id: str, ts_ms: int = 2_000, label: float | None = 1.0, **kw: Any) -> Outcome:
    return Outcome(request_id=request_id, rollout_id=kw.pop("rollout_id", "r1"), ts_ms=ts_ms,
                   label=label, **kw)
