"""Rollout strategies: the traffic schedule each one follows, and what a stage means.

A strategy turns a :class:`~streammon.events.RolloutSpec` into the tuple of candidate
traffic fractions its stages use (the last one is where promotion is judged):

* ``canary``: f_t = min(f_max, f0 · growth^t) — 5%, 10%, 20%, 40%, 50% …
* ``linear``: f_t = min(f_max, f0 + increment · t)
* ``stages``: the explicit list ``stages`` (increasing), e.g. [0.01, 0.1, 0.5]
* ``blue_green``: one validation stage at f0, then an instant switch of everything.
  With ``validation="shadow"`` green gets no served traffic at all: serving nodes mirror
  a share f0 of requests to it and publish its predictions with ``shadow=true``; they are
  compared for latency, errors and score drift, never served. The route keeps 100% on
  blue until the promote command flips it in one atomic write; a rollback flips it back.

The spec itself is checked in :mod:`streammon.decide.spec`. Pure: no I/O.
"""

from __future__ import annotations

from streammon.control.commands import RouteState
from streammon.events import PREDICTION_METRICS, RolloutSpec, SpecDefaults

PREDICTION_SIDE_METRICS = frozenset(PREDICTION_METRICS)
_MAX_STAGES = 64


def ramp(f0: float, f_max: float, *, growth: float | None = None,
         increment: float | None = None) -> tuple[float, ...]:
    """Return the ramp ``min(f_max, f0 · growth^t)`` (or ``f0 + increment · t``) up to f_max.

    The one place a ramp is computed: :func:`stage_fractions` (and so every policy built
    from a spec) and :data:`DEFAULT_STAGES` use it.
    """
    out = [float(min(f_max, f0))]
    while out[-1] < f_max and len(out) < _MAX_STAGES:
        t = len(out)
        nxt = f0 * growth**t if growth is not None else f0 + (increment or 0.0) * t
        out.append(float(min(f_max, nxt)))
    return tuple(out)


DEFAULT_STAGES = ramp(SpecDefaults.F0, SpecDefaults.F_MAX, growth=SpecDefaults.GROWTH)
"""The stages of a canary rollout with the spec's default ramp (5%, 10%, 20%, 40%, 50%)."""


def stage_fractions(spec: RolloutSpec) -> tuple[float, ...]:
    """Return the candidate's traffic fraction (or mirrored share) in each stage."""
    if spec.strategy == "stages":
        return tuple(float(f) for f in spec.stages)
    if spec.strategy == "blue_green":
        return (float(spec.f0),)
    if spec.strategy == "canary":
        return ramp(spec.f0, spec.f_max, growth=spec.growth)
    return ramp(spec.f0, spec.f_max, increment=spec.increment)


def fraction_at(spec: RolloutSpec, stage: int) -> float:
    """Return the fraction of ``stage`` (stages past the last stay at the last)."""
    fractions = stage_fractions(spec)
    return fractions[min(max(stage, 0), len(fractions) - 1)]


def is_shadow(spec: RolloutSpec) -> bool:
    """Return True when the candidate is validated on mirrored, never-served traffic."""
    return spec.strategy == "blue_green" and spec.validation == "shadow"


def served_fraction(spec: RolloutSpec, stage: int) -> float:
    """Return the share of traffic the routers send to the candidate in ``stage``."""
    return 0.0 if is_shadow(spec) else fraction_at(spec, stage)


def intended_canary_share(spec: RolloutSpec, stage: int) -> float:
    """Return the expected canary share of all predictions (for the sample-ratio check).

    Mirroring a share f of requests adds f shadow predictions per served one: f/(1+f).
    """
    f = fraction_at(spec, stage)
    return f / (1.0 + f) if is_shadow(spec) else f


def drift_guarded(spec: RolloutSpec) -> bool:
    """Return True when score drift rolls back (default: only with shadow validation)."""
    return is_shadow(spec) if spec.drift_guard is None else spec.drift_guard


def shadow_target(route: RouteState | None) -> str | None:
    """Return the version a serving node should mirror requests to, or None.

    During shadow validation the route sends everything to the baseline (candidate
    weight 0) while the rollout is running: mirror to the candidate then, never after.
    """
    if route is None or route.phase != "running" or route.candidate_weight > 0.0:
        return None
    return route.candidate
