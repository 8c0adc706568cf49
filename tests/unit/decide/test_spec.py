"""The one validated spec path: declared constraints and defaults, shared by the policy."""

from __future__ import annotations

import pytest

from streammon.backtest import parse_spec as public_parse_spec
from streammon.decide.policy import MetricSpec, RolloutPolicy
from streammon.decide.progress import policy_from_spec
from streammon.decide.spec import check_spec, parse_spec
from streammon.errors import ConfigError
from streammon.events import MetricSpecWire, RolloutSpec

LABEL = MetricSpecWire(name="label", kind="binary", bad_direction="decrease")


def test_a_spec_built_in_python_meets_the_declared_constraints() -> None:
    """A RolloutSpec built in Python (never decoded) is held to the wire type's constraints."""
    bad = RolloutSpec(rollout_id="r", baseline="a", candidate="b", metrics=[LABEL], f0=1.5)
    with pytest.raises(ConfigError, match=r"\$\.f0"):
        check_spec(bad)
    negative = MetricSpecWire(name="label", kind="binary", bad_direction="decrease", margin=-1)
    with pytest.raises(ConfigError, match=r"\$\.metrics\[0\]\.margin"):
        check_spec(RolloutSpec(rollout_id="r", baseline="a", candidate="b", metrics=[negative]))
    weightless = MetricSpecWire(name="label", kind="binary", bad_direction="decrease", weight=0)
    with pytest.raises(ConfigError, match=r"\$\.metrics\[0\]\.weight"):
        check_spec(RolloutSpec(rollout_id="r", baseline="a", candidate="b",
                               metrics=[weightless]))


def test_a_dict_spec_is_parsed_once_and_names_the_field() -> None:
    """parse_spec (also streammon.backtest.parse_spec) rejects alpha >= 0.5 at `$.alpha`."""
    raw = {"rollout_id": "r", "baseline": "a", "candidate": "b",
           "metrics": [{"name": "label", "kind": "binary", "bad_direction": "decrease"}]}
    assert parse_spec(raw).alpha == 0.05
    assert public_parse_spec is parse_spec
    with pytest.raises(ConfigError, match=r"\$\.alpha"):
        parse_spec({**raw, "alpha": 0.6})
    with pytest.raises(ConfigError, match="repeat"):
        parse_spec({**raw, "metrics": raw["metrics"] * 2})


def test_metric_weights_reach_the_policy_and_default_to_equal() -> None:
    """A spec's metric weights are the policy's averaging weights; unset, all are 1."""
    latency = MetricSpecWire(name="latency_ms", kind="continuous", bad_direction="increase")
    weighted = MetricSpecWire(name="label", kind="binary", bad_direction="decrease", weight=4)
    policy = policy_from_spec(RolloutSpec(rollout_id="r", baseline="a", candidate="b",
                                          metrics=[weighted, latency]))
    assert [m.weight for m in policy.metrics] == [4.0, 1.0]


def test_the_policy_defaults_are_the_specs() -> None:
    """A default spec and a default policy agree on alpha, ramp, dwell and stage size."""
    from_spec = policy_from_spec(
        RolloutSpec(rollout_id="r", baseline="a", candidate="b", metrics=[LABEL]))
    direct = RolloutPolicy(metrics=(MetricSpec("label", "binary", "decrease"),))
    for name in ("alpha", "stages", "step_windows", "min_samples_per_stage", "srm_alpha",
                 "final_windows"):
        assert getattr(direct, name) == getattr(from_spec, name), name
