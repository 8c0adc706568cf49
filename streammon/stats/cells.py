"""Cells: sufficient statistics per (window, segment, arm), validated and additive.

A *cell* is one (window, segment) pair. For each arm it holds ``n`` (units: requests or,
for counts, exposures), ``sum`` (Σx, or events) and ``sumsq`` (Σx²). Arrays are shaped
``(..., windows, segments)``: the leading axes, if any, are independent replicates (the
simulation uses them); the last two are time and segment. Cells are *per window*, not
cumulative, and two partial :class:`Cells` of the same windows merge by ``+``.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import get_args

import numpy as np
import numpy.typing as npt

from streammon.errors import StreamMonError
from streammon.events import ARM_CODES, ARMS, SUMS, BadDirection, Kind

FloatArray = npt.NDArray[np.float64]

FIELDS: tuple[str, ...] = tuple(f"{stat}_{ARM_CODES[arm]}" for arm in ARMS for stat in SUMS)
"""The six arrays of a cell grid: ``n_a, sum_a, sumsq_a, n_b, sum_b, sumsq_b``."""
KINDS: tuple[str, ...] = get_args(Kind)
DIRECTIONS: tuple[str, ...] = get_args(BadDirection)


class StatsInputError(StreamMonError, ValueError):
    """Input arrays or parameters are invalid; the message names the field and the fix."""


@dataclass(frozen=True)
class Cells:
    """Per-window sufficient statistics of both arms; ``a`` = baseline, ``b`` = canary."""

    n_a: FloatArray
    sum_a: FloatArray
    sumsq_a: FloatArray
    n_b: FloatArray
    sum_b: FloatArray
    sumsq_b: FloatArray

    def __add__(self, other: Cells) -> Cells:
        """Merge two partial summaries of the same cells (partitions, workers) by addition."""
        return Cells(*(getattr(self, f) + getattr(other, f) for f in FIELDS))

    @property
    def shape(self) -> tuple[int, ...]:
        """Return the common array shape ``(..., windows, segments)``."""
        return tuple(self.n_a.shape)

    def head(self, windows: int) -> Cells:
        """Return the cells of the first ``windows`` windows (used for label delay)."""
        return Cells(*(getattr(self, f)[..., :windows, :] for f in FIELDS))

    def to_dict(self) -> dict[str, FloatArray]:
        """Return the six arrays keyed by field name, as ``replay`` takes them."""
        return {f: getattr(self, f) for f in FIELDS}


def check_choice(name: str, value: str, allowed: tuple[str, ...]) -> None:
    """Raise :class:`StatsInputError` unless ``value`` is one of ``allowed``."""
    if value not in allowed:
        raise StatsInputError(f"{name}={value!r} is not supported; use one of {allowed}")


def check_alpha(name: str, alpha: float) -> None:
    """Raise :class:`StatsInputError` unless ``0 < alpha < 0.5``."""
    if not (0.0 < float(alpha) < 0.5):
        raise StatsInputError(f"{name}={alpha!r} must be in (0, 0.5), e.g. 0.05")


def as_cells(cells: Mapping[str, object], kind: str) -> Cells:
    """Validate a mapping of the six arrays and return :class:`Cells` of float64.

    Raises :class:`StatsInputError` naming the field when a key is missing, shapes
    differ or are not ``(windows, segments)``, a value is NaN/inf or negative, or a
    binary metric has ``sum > n``.
    """
    check_choice("kind", kind, KINDS)
    missing = [f for f in FIELDS if f not in cells]
    if missing:
        raise StatsInputError(f"cells is missing {missing}; pass all of {list(FIELDS)}")
    arrays = {f: _as_float(f, cells[f]) for f in FIELDS}
    shape = arrays["n_a"].shape
    for field, arr in arrays.items():
        if arr.shape != shape:
            raise StatsInputError(
                f"cells[{field!r}] has shape {arr.shape} but n_a has {shape}; "
                "all six arrays must share one (windows, segments) shape"
            )
    _check_values(arrays, kind)
    return Cells(**arrays)


def _as_float(field: str, value: object) -> FloatArray:
    try:
        arr = np.asarray(value, dtype=np.float64)
    except (TypeError, ValueError) as exc:
        raise StatsInputError(f"cells[{field!r}] is not numeric: {exc}") from exc
    if arr.ndim < 2:
        raise StatsInputError(
            f"cells[{field!r}] has shape {arr.shape}; it must be (windows, segments) — "
            "for one segment use arr.reshape(-1, 1)"
        )
    if not np.all(np.isfinite(arr)):
        raise StatsInputError(f"cells[{field!r}] contains NaN or inf; drop or zero those cells")
    return arr


def _check_values(arrays: dict[str, FloatArray], kind: str) -> None:
    for arm in ("a", "b"):
        n, total = arrays[f"n_{arm}"], arrays[f"sum_{arm}"]
        if np.any(n < 0):
            raise StatsInputError(f"cells['n_{arm}'] has negative counts; n must be >= 0")
        if kind != "continuous" and np.any(total < 0):
            raise StatsInputError(f"cells['sum_{arm}'] has negative {kind} totals")
        if kind == "binary" and np.any(total > n):
            raise StatsInputError(
                f"cells['sum_{arm}'] exceeds n_{arm} in some cell; binary sums count "
                "successes, so 0 <= sum <= n (use kind='count' for events per exposure)"
            )
        if np.any((n == 0) & (total != 0)):
            raise StatsInputError(f"cells['sum_{arm}'] is non-zero in a cell with n_{arm} = 0")
