"""streammon.stats.horizon: judge after the horizon, freeze, guard label coverage per arm."""

from __future__ import annotations

import numpy as np
import pytest

from streammon.stats import StatsInputError
from streammon.stats.cells import FIELDS
from streammon.stats.horizon import compute_coverage_gap, freeze_rows, horizon_windows


def _cells(value: float, windows: int = 3, segments: int = 2) -> dict[str, np.ndarray]:
    return {f: np.full((windows, segments), value) for f in FIELDS}


def test_horizon_windows_rounds_up() -> None:
    """A 90 s horizon on 60 s windows is judged 2 windows later; none means 0."""
    assert horizon_windows(90_000, 60_000) == 2
    assert horizon_windows(60_000, 60_000) == 1
    assert horizon_windows(0, 60_000) == 0
    assert horizon_windows(None, 60_000) == 0
    with pytest.raises(StatsInputError):
        horizon_windows(-1, 60_000)


def test_judged_windows_are_frozen_at_first_judgement() -> None:
    """Values stored when a window is first judged win over anything that arrives later."""
    store: dict[str, dict[str, list[float]]] = {}
    first = freeze_rows(store, _cells(1.0), ("a", "b"), through=0)
    assert set(store) == {"0"} and first["n_a"][0, 0] == 1.0
    later = freeze_rows(store, _cells(5.0), ("a", "b"), through=1)
    assert later["n_a"][0].tolist() == [1.0, 1.0]  # window 0 frozen at its first values
    assert later["n_a"][1].tolist() == [5.0, 5.0]  # window 1 frozen now
    assert later["n_a"][2].tolist() == [5.0, 5.0]  # window 2 not judged yet: live


def test_a_segment_first_seen_after_freezing_is_zero_in_frozen_windows() -> None:
    """A new segment cannot add data to a window that was already judged."""
    store: dict[str, dict[str, list[float]]] = {}
    freeze_rows(store, _cells(1.0, segments=1), ("a",), through=0)
    again = freeze_rows(store, _cells(2.0), ("a", "b"), through=0)
    assert again["n_a"][0].tolist() == [1.0, 0.0]


def test_coverage_gap_flags_labels_missing_in_one_arm() -> None:
    """30% of canary labels missing against 0% in the baseline is a coverage gap."""
    exposures = {"n_a": np.full((10, 1), 5000.0), "n_b": np.full((10, 1), 500.0)}
    equal = {"n_a": exposures["n_a"] * 0.9, "n_b": exposures["n_b"] * 0.9}
    skewed = {"n_a": exposures["n_a"] * 0.9, "n_b": exposures["n_b"] * 0.6}
    assert not compute_coverage_gap(equal, exposures, 10, 0.001).differs
    gap = compute_coverage_gap(skewed, exposures, 10, 0.001)
    assert gap.differs and gap.baseline == pytest.approx(0.9) and gap.canary == pytest.approx(0.6)
    assert not compute_coverage_gap(skewed, exposures, 0, 0.001).differs
