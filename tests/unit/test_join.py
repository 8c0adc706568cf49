"""The join's rules, on pure JoinState: order, duplicates, windows, expiry."""

from __future__ import annotations

from helpers import outcome, pred

from streammon.join import JoinConfig, JoinState

CONFIG = JoinConfig(window_ms=1_000, ttl_ms=10_000)


def label_n(state: JoinState, key: tuple[str, int, str, str] = ("r1", 1_000, "all", "canary")) -> int:
    return int(state.cells[key].sums.get("label", [0])[0])  # type: ignore[index]


def test_prediction_then_outcome_joins() -> None:
    """An outcome that follows its prediction is counted once in the prediction's window."""
    state = JoinState(config=CONFIG)
    state.add_prediction(pred("a", ts_ms=1_500))
    state.add_outcome(outcome("a", ts_ms=5_000, label=1.0))
    cell = state.cells[("r1", 1_000, "all", "canary")]
    assert cell.sums["label"] == [1, 1.0, 1.0]
    assert state.counters["joined"] == 1


def test_outcome_before_prediction_joins() -> None:
    """An outcome that arrives first waits, and joins when its prediction comes."""
    state = JoinState(config=CONFIG)
    state.add_outcome(outcome("a", ts_ms=900, label=0.0))
    assert not state.cells
    state.add_prediction(pred("a", ts_ms=1_200))
    assert state.cells[("r1", 1_000, "all", "canary")].sums["label"] == [1, 0.0, 0.0]


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
    """A prediction with no outcome expires once event time passes its TTL, and is counted."""
    state = JoinState(config=CONFIG)
    state.add_prediction(pred("a", ts_ms=1_000))
    assert state.expire(now_ms=10_999) == 0
    state.add_prediction(pred("b", ts_ms=11_000))
    assert state.expire() == 1
    assert "a" not in state.pending
    assert state.counters["expired_predictions"] == 1
    assert state.cells[("r1", 1_000, "all", "canary")].expired == 1


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
    assert state.pending["a"].outcome is not None


def test_take_changes_reports_written_and_deleted_keys() -> None:
    """take_changes lists each changed pending key and cell once, then resets."""
    state = JoinState(config=CONFIG)
    state.add_prediction(pred("a", ts_ms=1_000))
    state.add_prediction(pred("b", ts_ms=1_000))
    state.add_outcome(outcome("a"))
    changes = state.take_changes()
    assert set(changes.pending_set) == {"a", "b"}
    assert changes.pending_set["a"].joined
    assert changes.cells == {("r1", 1_000, "all", "canary")}
    state.expire(now_ms=50_000)
    again = state.take_changes()
    assert again.pending_deleted == {"a", "b"}
    assert state.take_changes().pending_deleted == set()


def test_state_rebuilt_from_stored_pending_expires_it() -> None:
    """A JoinState built over recovered pending records schedules their expiry."""
    first = JoinState(config=CONFIG)
    first.add_prediction(pred("a", ts_ms=1_000))
    second = JoinState(config=CONFIG, pending=dict(first.pending), cells=dict(first.cells))
    assert second.expire(now_ms=11_000) == 1
