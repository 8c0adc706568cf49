"""Rollout strategies: schedules, shadow semantics and spec checks."""

from __future__ import annotations

from typing import Any

import pytest

from streammon.control.commands import RouteState
from streammon.decide.spec import check_spec
from streammon.decide.strategies import (
    drift_guarded,
    intended_canary_share,
    served_fraction,
    shadow_target,
    stage_fractions,
)
from streammon.errors import ConfigError
from streammon.events import MetricSpecWire, RolloutSpec

LATENCY = MetricSpecWire(name="latency_ms", kind="continuous", bad_direction="increase")


def spec(**kw: Any) -> RolloutSpec:
    fields: dict[str, Any] = {"rollout_id": "r", "baseline": "blue", "candidate": "green",
                              "metrics": [LATENCY]}
    fields.update(kw)
    return RolloutSpec(**fields)


def test_canary_is_geometric_up_to_f_max() -> None:
    """The canary strategy doubles from f0 and stops at f_max."""
    assert stage_fractions(spec(f0=0.05, growth=2, f_max=0.5)) == (0.05, 0.1, 0.2, 0.4, 0.5)


def test_linear_adds_the_increment() -> None:
    """The linear strategy adds `increment` per stage and stops at f_max."""
    fractions = stage_fractions(spec(strategy="linear", f0=0.1, increment=0.15, f_max=0.5))
    assert fractions == pytest.approx((0.1, 0.25, 0.4, 0.5))


def test_explicit_stages_are_used_as_given() -> None:
    """The stages strategy follows the list it is given."""
    assert stage_fractions(spec(strategy="stages", stages=[0.01, 0.1, 0.3])) == (0.01, 0.1, 0.3)


def test_blue_green_has_one_validation_stage() -> None:
    """Blue-green validates at f0 and has no intermediate stages."""
    assert stage_fractions(spec(strategy="blue_green", f0=0.1)) == (0.1,)


def test_shadow_validation_serves_green_nothing() -> None:
    """With shadow validation routers send green no traffic, while the ratio check expects
    mirrored predictions to be f/(1+f) of all predictions, and drift is guarded."""
    s = spec(strategy="blue_green", validation="shadow", f0=0.25)
    assert served_fraction(s, 0) == 0.0
    assert intended_canary_share(s, 0) == pytest.approx(0.2)
    assert drift_guarded(s)
    assert not drift_guarded(spec())


def test_shadow_rejects_outcome_metrics() -> None:
    """Shadow validation cannot guard conversion: a shadow prediction is never served."""
    label = MetricSpecWire(name="label", kind="binary", bad_direction="decrease")
    with pytest.raises(ConfigError, match="shadow validation never serves"):
        check_spec(spec(strategy="blue_green", validation="shadow", metrics=[label]))


@pytest.mark.parametrize(("fields", "field"), [
    ({"candidate": "blue"}, "candidate"),
    ({"strategy": "stages", "stages": [0.2, 0.1]}, "stages"),
    ({"f0": 0.6, "f_max": 0.5}, "f0"),
    ({"f_max": 1.0, "f0": 1.0}, "strictly between 0 and 1"),
])
def test_bad_specs_name_the_field(fields: dict[str, Any], field: str) -> None:
    """A spec that cannot run raises ConfigError naming what to fix."""
    with pytest.raises(ConfigError, match=field):
        check_spec(spec(**fields))


def test_shadow_target_only_while_running_on_baseline() -> None:
    """Serving nodes mirror to green only while the route is running with green at 0%."""
    base = {"rollout_id": "r", "seq": 1, "action": "start", "baseline": "blue",
            "candidate": "green", "stage": 0, "ts_ms": 0}
    running = RouteState(**base, weights={"blue": 1.0}, fraction=0.0, phase="running")
    promoted = RouteState(**{**base, "action": "promote"}, weights={"green": 1.0},
                          fraction=1.0, phase="promoted")
    assert shadow_target(running) == "green"
    assert shadow_target(promoted) is None
    assert shadow_target(None) is None
