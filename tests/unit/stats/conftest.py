"""Small deterministic cell builders shared by the statistics unit tests."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import pytest

from streammon.sim.cell_draws import draw_cells, make_plan


def _binary_cells(windows: int, n_a: float, n_b: float, p_a: float, p_b: float,
                 segments: int = 1) -> dict[str, np.ndarray]:
    """Return noise-free binary cells: every cell holds exactly the expected successes."""
    shape = (windows, segments)
    out = {"n_a": np.full(shape, n_a), "n_b": np.full(shape, n_b),
           "sum_a": np.full(shape, n_a * p_a), "sum_b": np.full(shape, n_b * p_b)}
    out["sumsq_a"], out["sumsq_b"] = out["sum_a"].copy(), out["sum_b"].copy()
    return out


BinaryCells = Callable[..., dict[str, np.ndarray]]


@pytest.fixture
def binary_cells() -> BinaryCells:
    """Return the builder of noise-free binary cells."""
    return _binary_cells


@pytest.fixture
def noisy_binary() -> dict[str, np.ndarray]:
    """One seeded 60-window conversion rollout with a 5% relative drop, 4 segments."""
    plan = make_plan("binary", windows=60, segment_means=(0.1, 0.12, 0.08, 0.1),
                     relative_effect=-0.05)
    return {k: v[0] for k, v in draw_cells(plan, 1, seed=11).to_dict().items()}
