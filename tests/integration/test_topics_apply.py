"""`streammon topics apply` on the embedded broker: idempotent, reports drift, guards the join."""

from __future__ import annotations

import dataclasses

import pytest

from streammon.config.settings import Settings
from streammon.errors import CoPartitionError, TopicError
from streammon.kafka.topics import (
    apply_topics,
    check_copartitioned,
    existing_partitions,
    load_specs,
)


def test_apply_creates_then_is_a_no_op(settings: Settings) -> None:
    """The first apply creates every topic with its partitions; the second changes nothing."""
    first = apply_topics(settings.kafka, settings.topics)
    assert set(first.values()) == {"created"}
    have = existing_partitions(settings.kafka)
    for spec in load_specs():
        assert have[spec.full_name(settings.topics)] == spec.partitions
    second = apply_topics(settings.kafka, settings.topics)
    assert set(second.values()) == {"ok"}


def test_apply_reports_partition_drift(settings: Settings) -> None:
    """A topic that exists with another partition count is reported as drift, not changed."""
    specs = load_specs()
    apply_topics(settings.kafka, settings.topics, specs)
    bigger = [dataclasses.replace(s, partitions=s.partitions + 2) if s.name == "control" else s
              for s in specs]
    report = apply_topics(settings.kafka, settings.topics, bigger)
    assert report[settings.topics.control].startswith("drift: 1 partitions, spec says 3")


def test_join_refuses_mismatched_partitions(settings: Settings) -> None:
    """check_copartitioned raises CoPartitionError when outcomes has fewer partitions."""
    specs = [dataclasses.replace(s, partitions=2) if s.name == "outcomes" else s
             for s in load_specs()]
    apply_topics(settings.kafka, settings.topics, specs)
    with pytest.raises(CoPartitionError, match="same partition count"):
        check_copartitioned(settings.kafka, settings.topics)


def test_join_refuses_missing_topics(settings: Settings) -> None:
    """check_copartitioned tells the operator to apply the topics when they do not exist."""
    with pytest.raises(TopicError, match="topics apply"):
        check_copartitioned(settings.kafka, settings.topics)


def test_worker_exits_with_a_clear_error_on_mismatch(settings: Settings, spawn: object) -> None:
    """`streammon worker` exits with code 2 and names the fix when topics are not co-partitioned."""
    specs = [dataclasses.replace(s, partitions=2) if s.name == "outcomes" else s
             for s in load_specs()]
    apply_topics(settings.kafka, settings.topics, specs)
    proc = spawn("worker")  # type: ignore[operator]
    assert proc.wait(timeout=60) == 2
