"""Seeded serving traffic with an injected regression, for the demo and the tests.

A :class:`Scenario` says how each model version behaves (conversion rate, latency,
error rate, scores), how traffic splits across segments, how late outcomes arrive, and
when (if ever) the candidate regresses. :class:`TrafficSim` turns it into request
events; it does not know about Kafka or clocks: the caller passes the time.
"""

from __future__ import annotations

import heapq
from dataclasses import dataclass, field
from typing import Any

import numpy as np


@dataclass(frozen=True, kw_only=True)
class ModelBehaviour:
    """How one model version serves: outcome rate, latency distribution, errors."""

    conversion: float = 0.20
    latency_median_ms: float = 40.0
    latency_sigma: float = 0.35
    error_rate: float = 0.005
    score_shift: float = 0.0


@dataclass(frozen=True, kw_only=True)
class Scenario:
    """A canary rollout to simulate; ``regression_at_s=None`` is a healthy candidate."""

    baseline: ModelBehaviour = field(default_factory=ModelBehaviour)
    candidate: ModelBehaviour = field(default_factory=ModelBehaviour)
    regressed: ModelBehaviour = field(default_factory=lambda: ModelBehaviour(
        conversion=0.13, latency_median_ms=58.0, error_rate=0.02, score_shift=-0.1))
    regression_at_s: float | None = 20.0
    rate_per_s: float = 400.0
    segments: tuple[tuple[str, float, float], ...] = (("mobile", 0.6, -0.04), ("web", 0.4, 0.04))
    outcome_delay_s: tuple[float, float] = (0.1, 0.8)
    outcome_report_rate: float = 0.95


@dataclass(order=True)
class _DueOutcome:
    due_s: float
    fields: dict[str, Any] = field(compare=False)


class TrafficSim:
    """Generate predictions now and their outcomes later, for routed requests."""

    def __init__(self, scenario: Scenario, *, rollout_id: str, seed: int = 7) -> None:
        self.scenario = scenario
        self.rollout_id = rollout_id
        self.rng = np.random.default_rng(seed)
        self._due: list[_DueOutcome] = []
        self._next_id = 0
        self._carry = 0.0
        names = [s[0] for s in scenario.segments]
        weights = np.array([s[1] for s in scenario.segments])
        self._segments = (names, weights / weights.sum(), {s[0]: s[2] for s in scenario.segments})

    def behaviour(self, version: str, candidate: str, elapsed_s: float) -> ModelBehaviour:
        """Return how ``version`` behaves ``elapsed_s`` into the run."""
        sc = self.scenario
        if version != candidate:
            return sc.baseline
        regressed = sc.regression_at_s is not None and elapsed_s >= sc.regression_at_s
        return sc.regressed if regressed else sc.candidate

    def arrivals(self, dt_s: float) -> int:
        """Return how many requests arrive in the next ``dt_s`` seconds (fractional carry)."""
        self._carry += self.scenario.rate_per_s * dt_s
        n = int(self._carry)
        self._carry -= n
        return n

    def request(self, *, unit_id: str, version: str, arm: str, candidate: str,
                weights_seq: int | None, now_s: float, elapsed_s: float) -> dict[str, Any]:
        """Serve one request: return the prediction fields and schedule its outcome."""
        names, probs, lift = self._segments
        segment = str(names[int(self.rng.choice(len(names), p=probs))])
        model = self.behaviour(version, candidate, elapsed_s)
        self._next_id += 1
        request_id = f"{self.rollout_id}-{self._next_id}"
        ts_ms = int(now_s * 1000)
        latency = float(model.latency_median_ms * np.exp(model.latency_sigma *
                                                         self.rng.standard_normal()))
        score = float(np.clip(self.rng.beta(2, 5) + model.score_shift, 0.0, 1.0))
        prediction = {"request_id": request_id, "rollout_id": self.rollout_id,
                      "model_version": version, "arm": arm, "ts_ms": ts_ms,
                      "segment": segment, "unit_id": unit_id, "score": score,
                      "latency_ms": latency, "error": bool(self.rng.random() < model.error_rate),
                      "weights_seq": weights_seq}
        if self.rng.random() < self.scenario.outcome_report_rate:
            p = float(np.clip(model.conversion + lift[segment], 0.0, 1.0))
            lo, hi = self.scenario.outcome_delay_s
            due_s = now_s + float(self.rng.uniform(lo, hi))
            outcome = {"request_id": request_id, "rollout_id": self.rollout_id,
                       "ts_ms": int(due_s * 1000), "label": float(self.rng.random() < p),
                       "unit_id": unit_id}  # keyed like its prediction: by unit
            heapq.heappush(self._due, _DueOutcome(due_s, outcome))
        return prediction

    def due_outcomes(self, now_s: float) -> list[dict[str, Any]]:
        """Return (and forget) every outcome due by ``now_s``."""
        out = []
        while self._due and self._due[0].due_s <= now_s:
            out.append(heapq.heappop(self._due).fields)
        return out
