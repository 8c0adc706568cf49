"""The join's rules, on pure JoinState: order, duplicates, windows, expiry."""

from __future__ import annotations

from helpers import outcome, pred

from streammon.join.state import (
    JoinConfig,
    JoinState,
    PendingOutcome,
    PendingPrediction,
    join_key,
)

CONFIG = JoinConfig(window_ms=1_000, ttl_ms=10_000)


def label_n(state: JoinState,
            key: tuple[str, int, str, str] = ("r1", 1_000, "all", "canary")) -> int:
    return int(state.cells[key].sums.get("label", [0])[0])  # type: ignore[index]


def test_prediction_then_outcome_joins() -> None:
    """An outcome that follows its prediction is counted once in the prediction's window."""
    state = JoinState(config=CONFIG)
    state.add_prediction(pred("a", ts_ms=1_500))
    state.add_outcome(outcome("a", ts_ms=5_000, label=1.0))
    cell = state.cells[("r1", 1_000, "all", "canary")]
    assert cell.sums["label"][:3] == [1, 1.0, 1.0]
    assert state.counters["joined"] == 1


def test_outcome_before_prediction_joins() -> None:
    """An outcome that arrives first waits, and joins when its prediction comes."""
    state = JoinState(config=CONFIG)
    state.add_outcome(outcome("a", ts_ms=900, label=0.0))
    assert not state.cells
    state.add_prediction(pred("a", ts_ms=1_200))
    assert state.cells[("r1", 1_000, "all", "canary")].sums["label"][:3] == [1, 0.0, 0.0]


def test_duplicate_outcome_is_dropped_and_counted() -> None:
    """A second outcome for a joined request changes no statistic and is counted."""
    state = JoinState(config=CONFIG)
    state.add_prediction(pred("a", ts_ms=1_000))
    state.add_outcome(outcome("a", label=1.0))
    state.add_outcome(outcome("a", label=1.0))
    assert label_n(state) == 1
    assert state.counters["duplicate_outcomes"] == 1


def test_duplicate_prediction_is_dropped_and_counted() -> None:
    """A second prediction for the same request adds no latency sample and is counted."""
    state = JoinState(config=CONFIG)
    state.add_prediction(pred("a", ts_ms=1_000))
    state.add_prediction(pred("a", ts_ms=1_000))
    assert state.cells[("r1", 1_000, "all", "canary")].sums["latency_ms"][0] == 1
    assert state.counters["duplicate_predictions"] == 1


def test_duplicate_waiting_outcome_is_dropped() -> None:
    """Two outcomes that both arrive before their prediction count once."""
    state = JoinState(config=CONFIG)
    state.add_outcome(outcome("a", ts_ms=900))
    state.add_outcome(outcome("a", ts_ms=950))
    state.add_prediction(pred("a", ts_ms=1_000))
    assert label_n(state) == 1
    assert state.counters["duplicate_outcomes"] == 1


def test_windows_follow_prediction_time() -> None:
    """A late outcome lands in its prediction's window, not in the window of its arrival."""
    state = JoinState(config=CONFIG)
    state.add_prediction(pred("a", ts_ms=1_999))
    state.add_outcome(outcome("a", ts_ms=7_500))
    assert label_n(state, ("r1", 1_000, "all", "canary")) == 1
    assert ("r1", 7_000, "all", "canary") not in state.cells


def test_unjoined_prediction_expires_by_event_time() -> None:
    """A prediction with no outcome expires once both inputs pass its TTL, and is counted."""
    state = JoinState(config=CONFIG)
    state.add_prediction(pred("a", ts_ms=1_000))
    assert state.expire(now_ms=10_999) == 0
    state.add_prediction(pred("b", ts_ms=11_000))
    state.add_outcome(outcome("c", ts_ms=11_000))
    assert state.expire() == 1
    assert join_key("r1", "a") not in state.pending
    assert state.counters["expired_predictions"] == 1
    assert state.cells[("r1", 1_000, "all", "canary")].expired == 1


def test_expiry_clock_waits_for_the_slower_input() -> None:
    """Predictions racing ahead do not expire a prediction whose outcome is still queued."""
    state = JoinState(config=CONFIG)
    state.add_prediction(pred("a", ts_ms=1_000))
    state.add_prediction(pred("b", ts_ms=50_000))
    assert state.expire() == 0
    state.add_outcome(outcome("a", ts_ms=3_000))
    assert label_n(state) == 1


def test_orphan_outcome_expires() -> None:
    """An outcome whose prediction never comes expires and is counted as an orphan."""
    state = JoinState(config=CONFIG)
    state.add_outcome(outcome("a", ts_ms=1_000))
    state.expire(now_ms=20_000)
    assert state.counters["orphan_outcomes"] == 1
    assert not state.pending


def test_outcome_after_expiry_waits_as_new() -> None:
    """An outcome arriving after its prediction expired is not joined (the prediction is gone)."""
    state = JoinState(config=CONFIG)
    state.add_prediction(pred("a", ts_ms=1_000))
    state.expire(now_ms=12_000)
    state.add_outcome(outcome("a", ts_ms=12_000))
    assert label_n(state) == 0
    assert isinstance(state.pending[join_key("r1", "a")], PendingOutcome)


def test_late_prediction_after_grace_is_dropped_and_counted() -> None:
    """A prediction whose window closed more than grace_ms ago adds nothing and is counted."""
    state = JoinState(config=JoinConfig(window_ms=1_000, ttl_ms=10_000, grace_ms=500))
    state.add_prediction(pred("a", ts_ms=5_000))
    state.add_prediction(pred("late", ts_ms=3_400))
    state.add_prediction(pred("in-grace", ts_ms=3_600 + 400))
    assert state.counters["late_predictions"] == 1
    assert ("r1", 3_000, "all", "canary") not in state.cells
    assert join_key("r1", "late") not in state.pending


def test_joined_request_leaves_a_small_tombstone() -> None:
    """A joined request is remembered only by its expiry time (an int), to catch duplicates."""
    state = JoinState(config=CONFIG)
    state.add_prediction(pred("a", ts_ms=1_000))
    state.add_outcome(outcome("a"))
    assert state.pending[join_key("r1", "a")] == 1_000 + CONFIG.ttl_ms


def test_take_changes_reports_each_written_entry_and_cell_once() -> None:
    """take_changes lists each changed entry (latest value) and cell once, then resets."""
    state = JoinState(config=CONFIG)
    state.add_prediction(pred("a", ts_ms=1_000))
    state.add_prediction(pred("b", ts_ms=1_000))
    state.add_outcome(outcome("a"))
    changes = state.take_changes()
    assert set(changes.entries) == {join_key("r1", "a"), join_key("r1", "b")}
    assert isinstance(changes.entries[join_key("r1", "a")], int)
    assert isinstance(changes.entries[join_key("r1", "b")], PendingPrediction)
    assert changes.cells == {("r1", 1_000, "all", "canary")}
    assert not state.take_changes().entries


def test_restore_drops_entries_already_expired() -> None:
    """Restored entries at or before expired_through_ms are dropped, not counted again."""
    first = JoinState(config=CONFIG)
    first.add_prediction(pred("a", ts_ms=1_000))
    first.add_prediction(pred("b", ts_ms=5_000))
    second = JoinState(config=CONFIG)
    second.expired_through_ms = 11_000
    second.restore(dict(first.pending), {})
    assert set(second.pending) == {join_key("r1", "b")}
    assert second.expire(now_ms=15_000) == 1
    assert second.counters["expired_predictions"] == 1


def test_shadow_prediction_counts_at_once_and_waits_for_nothing() -> None:
    """A mirrored (shadow) prediction adds its latency and error at once, expires nothing
    as unlabelled, and a repeat of it is a duplicate."""
    state = JoinState(config=CONFIG)
    shadow = pred("a~shadow", ts_ms=1_000, shadow=True)
    state.add_predictions([shadow, shadow])
    state.expire(now_ms=50_000)
    cell = state.cells[("r1", 1_000, "all", "canary")]
    assert cell.sums["latency_ms"][0] == 1 and cell.expired == 0
    assert state.counters["shadow_predictions"] == 1
    assert state.counters["duplicate_predictions"] == 1
    assert state.counters["expired_predictions"] == 0


def test_expiry_queue_yields_due_keys_oldest_first_and_keeps_the_rest() -> None:
    """Keys due at or before the clock come out by due time (several per millisecond
    included), later ones stay queued, and a key can be queued twice."""
    from streammon.join.state import ExpiryQueue

    queue = ExpiryQueue()
    for due_ms, key in ((30, "c"), (10, "a1"), (20, "b"), (10, "a2"), (40, "d"), (20, "b")):
        queue.push(due_ms, key)
    assert list(queue.pop_due(9)) == []
    first = list(queue.pop_due(20))
    assert [d for d, _ in first] == [10, 10, 20, 20]
    assert sorted(k for _, k in first) == ["a1", "a2", "b", "b"]
    assert len(queue) == 2
    assert list(queue.pop_due(10**6)) == [(30, "c"), (40, "d")]


def test_an_entry_that_waits_longer_is_not_expired_by_its_stale_queue_slot() -> None:
    """A joined request keeps its expiry; an outcome that came first and is joined by a
    prediction expires at the outcome's time, never earlier, and only once."""
    state = JoinState(config=CONFIG)
    state.add_outcome(outcome("a", ts_ms=2_000, label=1.0))
    state.add_prediction(pred("a", ts_ms=1_500))
    state.add_prediction(pred("b", ts_ms=1_600))
    state.prediction_wm_ms = state.outcome_wm_ms = 11_700
    assert state.expire() == 1  # b, unlabelled, at 11,600; a's tombstone lives to 12,000
    assert join_key("r1", "a") in state.pending
    assert state.counters["expired_predictions"] == 1
    assert state.expire(12_000) == 1 and not state.pending
