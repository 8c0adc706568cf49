# ruff: noqa: RUF002
"""Hypothesis properties of the statistics: no look-ahead, merge by addition, validity bounds."""

from __future__ import annotations

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from streammon.stats import as_cells, compute_sequence, replay
from streammon.stats.confseq import half_normal_boundary


@st.composite
def binary_cells(draw: st.DrawFn) -> dict[str, np.ndarray]:
    windows = draw(st.integers(1, 12))
    segments = draw(st.integers(1, 3))
    n = st.integers(0, 60)
    n_a = np.array(draw(st.lists(n, min_size=windows * segments, max_size=windows * segments)),
                   dtype=float).reshape(windows, segments)
    n_b = np.array(draw(st.lists(n, min_size=windows * segments, max_size=windows * segments)),
                   dtype=float).reshape(windows, segments)
    frac_a = draw(st.floats(0, 1))
    frac_b = draw(st.floats(0, 1))
    sum_a, sum_b = np.floor(n_a * frac_a), np.floor(n_b * frac_b)
    return {"n_a": n_a, "sum_a": sum_a, "sumsq_a": sum_a, "n_b": n_b, "sum_b": sum_b,
            "sumsq_b": sum_b}


@settings(max_examples=60, deadline=None)
@given(binary_cells(), st.sampled_from(["binary", "count"]),
       st.sampled_from(["decrease", "increase"]))
def test_replay_prefix_equals_prefix_of_replay(cells, kind: str, bad: str) -> None:
    """For any cells, verdicts of the first t windows never depend on later windows."""
    full = replay(cells, kind=kind, bad_direction=bad)
    t = max(1, len(full) // 2)
    assert replay({k: v[:t] for k, v in cells.items()}, kind=kind, bad_direction=bad) == full[:t]


@settings(max_examples=60, deadline=None)
@given(binary_cells(), st.sampled_from(["binary", "count"]))
def test_verdicts_are_absorbing_and_bounds_nested(cells, kind: str) -> None:
    """Once rollback/promote appears it stays; mean-difference CS bounds only tighten."""
    r = compute_sequence(as_cells(cells, kind), kind=kind, bad_direction="decrease",
                         alpha=0.05, margin=0.01)
    codes = r.verdict_codes()
    first = np.flatnonzero(codes)
    if first.size:
        assert np.all(codes[first[0]:] == codes[first[0]])
    if kind == "binary":  # count bounds are φ-bounds scaled by the current baseline rate
        assert np.all(r.lower[1:] >= r.lower[:-1]) and np.all(r.upper[1:] <= r.upper[:-1])


@settings(max_examples=100, deadline=None)
@given(st.floats(1e-6, 1e6), st.floats(1e-4, 1e4), st.floats(1e-4, 0.4))
def test_boundary_grows_with_information_and_shrinks_with_alpha(v: float, rho: float,
                                                                alpha: float) -> None:
    """u(V) is increasing in V, and a smaller α never gives a smaller boundary."""
    u = half_normal_boundary(np.array([v, 2 * v]), rho, alpha)
    assert u[1] >= u[0] > 0
    assert half_normal_boundary(np.array([v]), rho, alpha / 2)[0] >= u[0]
