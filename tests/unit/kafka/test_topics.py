"""Topic specs: every topic is declared, predictions and outcomes are co-partitioned."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from streammon.config.settings import TopicNames
from streammon.errors import ConfigError
from streammon.kafka.topics import load_specs


def test_every_topic_has_a_spec() -> None:
    """The specs cover predictions, outcomes, cohorts, control, diagnostics and dead letters."""
    names = {s.name for s in load_specs()}
    assert names >= {"predictions", "outcomes", "cohorts", "control", "diagnostics",
                     "deadletters"}


def test_join_inputs_are_copartitioned_in_the_specs() -> None:
    """Predictions and outcomes are declared with the same partition count and key."""
    specs = {s.name: s for s in load_specs()}
    assert specs["predictions"].partitions == specs["outcomes"].partitions
    assert specs["predictions"].key == specs["outcomes"].key == "request_id"


def test_full_name_uses_the_prefix() -> None:
    """A spec's topic name is the configured prefix plus its name."""
    spec = load_specs()[0]
    assert spec.full_name(TopicNames(prefix="x.")) == f"x.{spec.name}"


def test_spec_missing_a_field_is_named(tmp_path: Path) -> None:
    """A spec without partitions fails with ConfigError naming the file and the field."""
    (tmp_path / "bad.json").write_text(json.dumps({"name": "bad", "cleanup_policy": "delete",
                                                   "retention_ms": 1, "key": "k",
                                                   "value_schema": "x"}))
    with pytest.raises(ConfigError, match=r"bad\.json.*partitions"):
        load_specs(tmp_path)
