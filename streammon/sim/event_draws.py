# ruff: noqa: RUF002  (formulas use Greek letters and math signs)
"""Seeded event-level traffic: prediction and outcome event dicts as on the topics.

Where :mod:`streammon.stats.simulate` draws cell sums, this draws *requests*, so the
things that break per-request independence are really there: sticky units with
persistent tastes, errors in retry bursts, outcomes that arrive late (and later in one
arm), effects that change over time (novelty), base rates that drift, ramps along the
spec's stages, tiny segments, broken routers and heavy-tailed latency with timeouts.

* Units: ``units`` ids; a request picks a unit uniformly (or, with ``active_units``, one
  of that many units drawn afresh from the population each window: sessions of about
  ``requests_per_window / active_units`` requests, users who return now and then).
  A unit's arm is sticky: it draws ``u ~ U(0, 1)`` once and is in the canary while
  ``u < f_t`` (so when the fraction grows, units switch baseline → canary, as a
  hash-sticky router does).
* Conversion: unit taste ``z ~ N(0, 1)``, ``p = expit(logit(p_seg,t) + σ_u z + log(1+e_t))``
  for the canary (``e_t`` the relative effect in window t, approximately).
* Errors: bursts start with probability ``error_rate / burst_mean`` per request and
  last a geometric number of the unit's consecutive requests (mean ``burst_mean``).
* Outcomes: each prediction with a label gets an outcome ``delay ~ Exp(mean)`` later,
  per arm; ``label_missing`` drops a share of them per arm.
* Latency: lognormal(median, σ); ``timeout_ms`` caps it and marks the request an error
  and a timeout; ``latency_slow_share`` of canary requests are ``latency_slow_factor``
  times slower (a heavier tail).

Pure and seeded: the same plan and seed give the same events.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
from scipy import special

from streammon.stats.cells import FloatArray


@dataclass(frozen=True, kw_only=True)
class EventPlan:
    """How requests, units, arms and outcomes are drawn for one simulated rollout."""

    windows: int = 60
    window_ms: int = 60_000
    requests_per_window: int = 2_000
    units: int = 0
    """Number of distinct units; 0 makes every request its own unit."""
    active_units: int = 0
    """Units active per window, drawn from the ``units`` each window (0: all of them)."""
    segments: tuple[tuple[str, float, float], ...] = (("all", 1.0, 0.10),)
    """(name, traffic share, base conversion rate)."""
    fractions: tuple[float, ...] = (0.05,)
    step_windows: int = 0
    """Windows per stage; 0 keeps ``fractions[0]`` throughout."""
    effect: tuple[float, ...] = (0.0,)
    """Relative conversion effect of the canary per window (the last value repeats)."""
    unit_sd: float = 0.0
    drift: float = 0.0
    """Relative swing of the base rate over the run (rising when positive)."""
    error_rate: float = 0.0
    error_effect: float = 0.0
    burst_mean: float = 1.0
    latency_median_ms: float = 40.0
    latency_sigma: float = 0.35
    latency_effect: float = 0.0
    latency_slow_share: float = 0.0
    """Share of canary requests slowed by ``latency_slow_factor`` (a heavier upper tail)."""
    latency_slow_factor: float = 1.0
    timeout_ms: float = float("inf")
    covariate_r2: float = 0.0
    """When > 0, every prediction carries a covariate x (the baseline model's calibrated
    score, Beta with the request's conversion rate as mean) explaining this share of the
    conversion's variance; the conversion is then Bernoulli(x · (1 + effect))."""
    delay_mean_ms: tuple[float, float] = (5_000.0, 5_000.0)
    """Mean outcome delay (baseline, canary)."""
    label_missing: tuple[float, float] = (0.0, 0.0)
    srm_canary_loss: float = 0.0
    """Share of canary predictions lost (a broken router/publisher) while ``srm_windows``."""
    srm_windows: tuple[int, int] = (0, 0)
    rollout_id: str = "sim"
    start_ms: int = 1_699_999_980_000
    """A multiple of every usual window width (60 s, 10 s, 1 s)."""
    extra: dict[str, Any] = field(default_factory=dict)

    def fraction_at(self, window: int) -> float:
        """Return the canary fraction the router applies in ``window``."""
        if self.step_windows <= 0:
            return self.fractions[0]
        return self.fractions[min(window // self.step_windows, len(self.fractions) - 1)]

    def effect_at(self, window: int) -> float:
        """Return the canary's relative effect in ``window``."""
        return self.effect[min(window, len(self.effect) - 1)]


def draw_events(plan: EventPlan, seed: int) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """Return ``(predictions, outcomes)`` event dicts of one seeded rollout."""
    rng = np.random.default_rng(seed)
    n_units = plan.units if plan.units > 0 else plan.windows * plan.requests_per_window
    unit_u = rng.random(n_units)
    unit_z = rng.standard_normal(n_units)
    unit_seg = rng.choice(len(plan.segments), size=n_units, p=_shares(plan))
    burst_left = np.zeros(n_units, dtype=np.int64)
    preds: list[dict[str, Any]] = []
    outs: list[dict[str, Any]] = []
    for w in range(plan.windows):
        _draw_window(plan, rng, w, unit_u, unit_z, unit_seg, burst_left, preds, outs)
    return preds, outs


def _shares(plan: EventPlan) -> FloatArray:
    share = np.array([s[1] for s in plan.segments], dtype=np.float64)
    return np.asarray(share / share.sum(), dtype=np.float64)


def _draw_window(plan: EventPlan, rng: np.random.Generator, w: int, unit_u: FloatArray,
                 unit_z: FloatArray, unit_seg: Any, burst_left: Any,
                 preds: list[dict[str, Any]], outs: list[dict[str, Any]]) -> None:
    m = plan.requests_per_window
    if plan.units > 0 and 0 < plan.active_units < plan.units:
        active = rng.choice(plan.units, size=plan.active_units, replace=False)
        unit = active[rng.integers(0, active.size, size=m)]
    elif plan.units > 0:
        unit = rng.integers(0, unit_u.size, size=m)
    else:
        unit = w * m + np.arange(m)
    t0 = plan.start_ms + w * plan.window_ms
    ts = np.sort(t0 + rng.integers(0, plan.window_ms, size=m))
    canary = unit_u[unit] < plan.fraction_at(w)
    seg = unit_seg[unit]
    p = _conversion(plan, w, seg, unit_z[unit], canary)
    covariate = None
    if plan.covariate_r2 > 0.0:
        base = _conversion(plan, w, seg, unit_z[unit], np.zeros(m, dtype=bool))
        total = 1.0 / plan.covariate_r2 - 1.0
        covariate = rng.beta(base * total, (1.0 - base) * total)
        p = np.clip(covariate * np.where(canary, 1.0 + plan.effect_at(w), 1.0), 0.0, 1.0)
    label = rng.random(m) < p
    error = _errors(plan, rng, unit, canary, burst_left)
    latency = plan.latency_median_ms * np.exp(plan.latency_sigma * rng.standard_normal(m))
    latency = np.where(canary, latency * (1.0 + plan.latency_effect), latency)
    if plan.latency_slow_share > 0.0:
        slow = canary & (rng.random(m) < plan.latency_slow_share)
        latency = np.where(slow, latency * plan.latency_slow_factor, latency)
    timed_out = latency >= plan.timeout_ms
    latency = np.minimum(latency, plan.timeout_ms)
    error = error | timed_out
    lost = np.zeros(m, dtype=bool)
    if plan.srm_windows[0] <= w < plan.srm_windows[1]:
        lost = canary & (rng.random(m) < plan.srm_canary_loss)
    delay = rng.exponential(np.where(canary, plan.delay_mean_ms[1], plan.delay_mean_ms[0]))
    missing = rng.random(m) < np.where(canary, plan.label_missing[1], plan.label_missing[0])
    names = [s[0] for s in plan.segments]
    for i in np.flatnonzero(~lost):
        rid = f"{plan.rollout_id}-{w}-{i}"
        arm = "canary" if canary[i] else "baseline"
        pred = {"v": 1, "request_id": rid, "rollout_id": plan.rollout_id,
                "model_version": arm, "arm": arm, "ts_ms": int(ts[i]),
                "segment": names[seg[i]], "unit_id": f"u{unit[i]}",
                "latency_ms": float(latency[i]), "error": bool(error[i]),
                "timeout": bool(timed_out[i])}
        if covariate is not None:
            pred["covariate"] = float(covariate[i])
        preds.append(pred)
        if not missing[i]:
            outs.append({"v": 1, "request_id": rid, "rollout_id": plan.rollout_id,
                         "ts_ms": int(ts[i] + delay[i]), "label": float(label[i]),
                         "unit_id": f"u{unit[i]}"})


def _conversion(plan: EventPlan, w: int, seg: Any, z: FloatArray, canary: Any) -> FloatArray:
    base = np.array([s[2] for s in plan.segments], dtype=np.float64)[seg]
    swing = 1.0 + plan.drift * (w / max(plan.windows - 1, 1) - 0.5)
    logit = special.logit(np.clip(base * swing, 1e-6, 1 - 1e-6)) + plan.unit_sd * z
    p = special.expit(logit)
    return np.asarray(np.where(canary, np.clip(p * (1.0 + plan.effect_at(w)), 0.0, 1.0), p),
                      dtype=np.float64)


def _errors(plan: EventPlan, rng: np.random.Generator, unit: Any, canary: Any,
            burst_left: Any) -> Any:
    m = unit.size
    if plan.error_rate <= 0.0:
        return np.zeros(m, dtype=bool)
    rate = np.where(canary, plan.error_rate * (1.0 + plan.error_effect), plan.error_rate)
    if plan.burst_mean <= 1.0 or plan.units <= 0:
        return rng.random(m) < rate
    out = np.zeros(m, dtype=bool)
    start = rng.random(m) < rate / plan.burst_mean
    lengths = rng.geometric(1.0 / plan.burst_mean, size=m)
    for i in range(m):  # bursts follow the unit's consecutive requests (retries)
        u = unit[i]
        if burst_left[u] > 0:
            out[i] = True
            burst_left[u] -= 1
        elif start[i]:
            out[i] = True
            burst_left[u] = lengths[i] - 1
    return out
