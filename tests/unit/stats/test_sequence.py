"""The replay entry point: the checker's call, validation, absorbing and prefix properties."""

from __future__ import annotations

import numpy as np
import pytest

from streammon.stats import StatsInputError, replay


def test_checker_call_returns_one_verdict_per_window(noisy_binary: dict[str, np.ndarray]) -> None:
    """The exact call of the issue returns a list of 'continue'/'rollback'/'promote' strings."""
    verdicts = replay(noisy_binary, kind="binary", bad_direction="decrease", alpha=0.05,
                      margin=0.0)
    assert len(verdicts) == 60
    assert set(verdicts) <= {"continue", "rollback", "promote"}
    assert verdicts[-1] == "rollback"


def test_verdict_after_window_t_uses_only_windows_up_to_t(
        noisy_binary: dict[str, np.ndarray]) -> None:
    """Replaying any prefix gives exactly the prefix of the full replay (no look-ahead)."""
    full = replay(noisy_binary, kind="binary", bad_direction="decrease")
    for t in (1, 5, 17, 33, 59):
        prefix = {k: v[:t] for k, v in noisy_binary.items()}
        assert replay(prefix, kind="binary", bad_direction="decrease") == full[:t]


def test_rollback_is_absorbing_even_if_the_effect_reverses(binary_cells) -> None:
    """After a rollback, windows showing the canary better do not undo it."""
    bad = binary_cells(30, 57000, 3000, 0.10, 0.08)
    good = binary_cells(300, 57000, 3000, 0.10, 0.12)
    cells = {k: np.concatenate([bad[k], good[k]]) for k in bad}
    verdicts = replay(cells, kind="binary", bad_direction="decrease")
    first = verdicts.index("rollback")
    assert first < 30
    assert set(verdicts[first:]) == {"rollback"}


def test_promote_when_harm_beyond_margin_is_excluded(binary_cells) -> None:
    """An identical canary is promoted once the CS excludes a 0.5-point drop, not before."""
    cells = binary_cells(200, 57000, 3000, 0.10, 0.10)
    verdicts = replay(cells, kind="binary", bad_direction="decrease", margin=0.005)
    assert verdicts[0] == "continue"
    assert verdicts[-1] == "promote"
    assert "rollback" not in verdicts
    assert replay(cells, kind="binary", bad_direction="decrease", margin=0.0)[-1] == "continue"


def test_cells_with_an_empty_arm_are_skipped(binary_cells) -> None:
    """Windows where one arm has n = 0 change nothing: same verdicts as without them."""
    base = binary_cells(40, 57000, 3000, 0.10, 0.094)
    empty = binary_cells(5, 60000, 0, 0.10, 0.0)
    cells = {k: np.concatenate([empty[k], base[k]]) for k in base}
    assert replay(cells, kind="binary", bad_direction="decrease")[5:] == replay(
        base, kind="binary", bad_direction="decrease")


def test_count_kind_rolls_back_a_doubled_error_rate(binary_cells) -> None:
    """Exact rate test: errors at 0.2% vs 0.1% per exposure are rolled back quickly."""
    cells = binary_cells(30, 57000, 3000, 0.001, 0.002)
    verdicts = replay(cells, kind="count", bad_direction="increase")
    assert "rollback" in verdicts[:20]


def test_count_kind_with_zero_events_everywhere_continues(binary_cells) -> None:
    """No events at all in either arm is no evidence: every verdict is 'continue'."""
    cells = binary_cells(20, 57000, 3000, 0.0, 0.0)
    assert set(replay(cells, kind="count", bad_direction="increase")) == {"continue"}


@pytest.mark.parametrize(
    ("mutate", "message"),
    [
        (lambda c: c.pop("sumsq_b"), "missing"),
        (lambda c: c.__setitem__("n_b", c["n_b"][:-1]), "shape"),
        (lambda c: c["sum_a"].__setitem__((0, 0), np.nan), "NaN"),
        (lambda c: c["n_a"].__setitem__((0, 0), -1.0), "negative"),
        (lambda c: c["sum_b"].__setitem__((0, 0), 1e9), "exceeds"),
        (lambda c: c.__setitem__("n_a", c["n_a"][:, 0]), "windows, segments"),
    ],
)
def test_bad_cells_raise_stats_input_error_naming_the_problem(
        binary_cells, mutate, message: str) -> None:
    """Each malformed input raises a ValueError subclass whose message names the problem."""
    cells = binary_cells(4, 100, 10, 0.1, 0.1)
    mutate(cells)
    with pytest.raises(StatsInputError, match=message):
        replay(cells, kind="binary", bad_direction="decrease")
    assert issubclass(StatsInputError, ValueError)


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [({"kind": "ratio"}, "kind"), ({"bad_direction": "down"}, "bad_direction"),
     ({"alpha": 0.0}, "alpha"), ({"margin": -1.0}, "margin")],
)
def test_bad_parameters_name_the_parameter(
        binary_cells, kwargs: dict[str, object], field: str) -> None:
    """Out-of-range parameters raise StatsInputError naming the parameter."""
    with pytest.raises(StatsInputError, match=field):
        replay(binary_cells(3, 100, 10, 0.1, 0.1), **kwargs)  # type: ignore[arg-type]
