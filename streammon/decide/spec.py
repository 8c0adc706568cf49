"""The one validated path of a rollout spec: declared constraints, then cross-field rules.

A :class:`~streammon.events.RolloutSpec` declares each field's constraints once, as msgspec
``Meta`` on the wire type (they are also its JSON Schema in ``topics/schemas``) and its
defaults once, as the type's defaults. :func:`check_spec` enforces those constraints on
any spec (decoded, converted from a dict or built in Python), then the rules no single
field can express: the ramp (:mod:`streammon.decide.strategies` computes it), shadow
validation, unique metric names, a latency ``quantile``, an outcome ``covariate`` and a metric's
``horizon_ms``.
:func:`parse_spec` turns a dict into a checked spec.
Both raise :class:`~streammon.errors.ConfigError` naming the field and the fix; the
decision policy (:func:`streammon.decide.progress.policy_from_spec`) is built from a
checked spec only.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import msgspec

from streammon.decide.attribution import check_horizons
from streammon.decide.covariate import check_covariates
from streammon.decide.strategies import PREDICTION_SIDE_METRICS, is_shadow, stage_fractions
from streammon.decide.tail import check_quantiles
from streammon.errors import ConfigError
from streammon.events import RolloutSpec


def parse_spec(raw: Mapping[str, Any] | RolloutSpec) -> RolloutSpec:
    """Return the checked :class:`RolloutSpec` of a dict (or a spec); errors name the field."""
    if isinstance(raw, RolloutSpec):
        check_spec(raw)
        return raw
    spec = _convert(dict(raw))
    _check_rules(spec)
    return spec


def check_spec(spec: RolloutSpec) -> None:
    """Raise ConfigError, naming the field and the fix, for a spec that cannot run."""
    _convert(msgspec.to_builtins(spec))
    _check_rules(spec)


def _convert(raw: dict[str, Any]) -> RolloutSpec:
    """Apply the constraints declared on the wire type (msgspec names the field: ``$.f0``)."""
    try:
        return msgspec.convert(raw, RolloutSpec)
    except (msgspec.ValidationError, TypeError, ValueError) as exc:
        raise ConfigError(f"rollout spec: {exc}; see the README for the JSON form") from exc


def _check_rules(spec: RolloutSpec) -> None:
    """Check what one field's constraint cannot: arms, metrics, the ramp, shadow validation."""
    if spec.baseline == spec.candidate:
        raise ConfigError("`candidate` must differ from `baseline`")
    names = [m.name for m in spec.metrics]
    if not names:
        raise ConfigError("`metrics` is empty: guard at least one metric")
    if len(set(names)) != len(names):
        raise ConfigError(f"`metrics` names {names} repeat: guard each metric once")
    if spec.strategy == "stages":
        check_fractions(spec.stages, "stages")
    elif spec.f0 > spec.f_max:
        raise ConfigError(f"`f0` ({spec.f0}) must not exceed `f_max` ({spec.f_max})")
    if spec.strategy == "canary" and spec.growth <= 1.0:
        raise ConfigError("`growth` must be > 1 for the canary strategy")
    if is_shadow(spec):
        outcome_side = [n for n in names if n not in PREDICTION_SIDE_METRICS]
        if outcome_side:
            raise ConfigError(
                f"metrics {outcome_side} need served outcomes, but shadow validation never "
                "serves the candidate: guard latency_ms and error (and drift) instead, or use "
                'validation="traffic"')
    check_fractions(stage_fractions(spec), "every stage's fraction")
    check_quantiles(spec)
    check_covariates(spec)
    check_horizons(spec)


def check_fractions(stages: tuple[float, ...] | list[float], field: str) -> None:
    """Raise ConfigError unless ``stages`` is non-empty, strictly increasing and inside (0, 1).

    Promotion is judged in the last stage while both arms still get traffic, so no stage
    may send everything (1) or nothing (0) to the candidate.
    """
    values = [float(f) for f in stages]
    if not values or values != sorted(set(values)):
        raise ConfigError(f"`{field}` must be a non-empty, strictly increasing list")
    if not all(0.0 < f < 1.0 for f in values):
        raise ConfigError(f"`{field}` must lie strictly between 0 and 1: promotion is judged "
                          "while both arms still get traffic")
