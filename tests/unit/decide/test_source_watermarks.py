"""The decider's clock: every join partition must pass a window before it is judged."""

import pytest

from streammon.decide.source_watermarks import SourceWatermarks


def test_one_fast_partition_does_not_close_windows_for_the_others() -> None:
    """A partition far ahead (a backlog caught up unevenly) does not move time alone."""
    wm = SourceWatermarks(partitions=3)
    wm.observe("p0", 10_000)
    wm.observe("p0", 30_000)
    assert wm.closed_through_ms() == 0  # p1, p2 not heard from: nothing may close
    wm.observe("p1", 28_000)
    assert wm.closed_through_ms() == 0
    wm.observe("p2", 12_000)
    assert wm.closed_through_ms() == 12_000
    wm.observe("p2", 31_000)
    assert wm.closed_through_ms() == 28_000


def test_idle_partition_stops_holding_time_back() -> None:
    """A partition more than idle_ms behind the most advanced one is ignored."""
    wm = SourceWatermarks(partitions=2, idle_ms=5_000)
    wm.observe("p0", 1_000)
    wm.observe("p1", 1_000)
    wm.observe("p0", 5_500)
    assert wm.closed_through_ms() == 1_000
    wm.observe("p0", 6_500)
    assert wm.closed_through_ms() == 6_500


def test_partitions_never_heard_from_become_idle() -> None:
    """Partitions with no traffic at all hold time back for idle_ms of event time, no more."""
    wm = SourceWatermarks(partitions=4, idle_ms=5_000)
    wm.observe("p0", 1_000)
    wm.observe("p0", 6_000)
    assert wm.closed_through_ms() == 0
    wm.observe("p0", 6_001)
    assert wm.closed_through_ms() == 6_001


def test_zero_watermark_is_not_evidence() -> None:
    """A partition that has seen only predictions (watermark 0) does not count as reported."""
    wm = SourceWatermarks(partitions=2)
    wm.observe("p0", 0)
    wm.observe("p1", 5_000)
    assert wm.closed_through_ms() == 0
    wm.observe("p0", 4_000)
    assert wm.closed_through_ms() == 4_000


def test_watermarks_never_move_back_and_start_at_zero() -> None:
    """Time is 0 before any summary, and a stale re-sent summary cannot rewind it."""
    wm = SourceWatermarks(partitions=1)
    assert wm.closed_through_ms() == 0
    wm.observe("p0", 9_000)
    wm.observe("p0", 4_000)
    assert wm.closed_through_ms() == 9_000


@pytest.mark.parametrize("kwargs", [{"partitions": 0}, {"partitions": 2, "idle_ms": 0}])
def test_bad_settings_are_rejected(kwargs: dict[str, int]) -> None:
    """A clock over no partitions, or with no idleness allowance, is a configuration error."""
    with pytest.raises(ValueError, match=r"partitions|idle_ms"):
        SourceWatermarks(**kwargs)
