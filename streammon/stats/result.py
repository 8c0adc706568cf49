# ruff: noqa: RUF002  (formulas use Greek letters and math signs)
"""The common output of every sequential test: one value per window, per replicate."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from streammon.stats.cells import FloatArray

BoolArray = npt.NDArray[np.bool_]
IntArray = npt.NDArray[np.int64]

CONTINUE, ROLLBACK, PROMOTE = 0, 1, 2
VERDICT_NAMES: tuple[str, ...] = ("continue", "rollback", "promote")


@dataclass(frozen=True)
class SequenceResult:
    """Estimates and decisions after each window, arrays shaped ``(..., windows)``.

    ``effect`` is Δ̂ = μ_canary − μ_baseline (matched-cohort estimate), ``relative`` is
    Δ̂ / μ̂_baseline, ``lower``/``upper`` the running-intersected confidence-sequence
    bounds on Δ (each side at level α, so jointly 1 − 2α), ``harm`` whether significant
    harm has been shown (rollback), ``noninferior`` whether harm beyond the margin has
    been excluded (promote), ``p_harm`` the anytime-valid p-value of "no harm", and
    ``n_a``/``n_b`` the cumulative sample sizes of the cells used, and ``log_e_harm`` the
    log of the harm test's e-process at "no harm" after each window (not its running
    maximum), which e-values of several metrics average (:mod:`streammon.stats.evidence`).
    """

    effect: FloatArray
    relative: FloatArray
    lower: FloatArray
    upper: FloatArray
    harm: BoolArray
    noninferior: BoolArray
    p_harm: FloatArray
    n_a: FloatArray
    n_b: FloatArray
    log_e_harm: FloatArray | None = None

    def verdict_codes(self) -> IntArray:
        """Return absorbing verdict codes: 0 continue, 1 rollback, 2 promote.

        Whichever of rollback and promote is reached first holds for every later window;
        if both are reached in the same window, rollback wins.
        """
        windows = self.harm.shape[-1]
        first_harm = _first_true(self.harm, windows)
        first_ok = _first_true(self.noninferior, windows)
        t = np.arange(windows)
        rollback = (t >= first_harm[..., None]) & (first_harm <= first_ok)[..., None]
        promote = (t >= first_ok[..., None]) & (first_ok < first_harm)[..., None]
        return np.asarray(rollback * ROLLBACK + promote * PROMOTE, dtype=np.int64)


def _first_true(flags: BoolArray, windows: int) -> IntArray:
    """Return the first index where ``flags`` is true along the last axis, else ``windows``."""
    hit = flags.any(axis=-1)
    return np.asarray(np.where(hit, flags.argmax(axis=-1), windows), dtype=np.int64)


def harm_signed(effect: FloatArray, bad_direction: str) -> FloatArray:
    """Return θ = −Δ when a decrease hurts users and θ = Δ when an increase does."""
    return -effect if bad_direction == "decrease" else effect


def delta_bounds(
    theta_lower: FloatArray, theta_upper: FloatArray, bad_direction: str
) -> tuple[FloatArray, FloatArray]:
    """Map running bounds on the harm-signed θ back to bounds on Δ."""
    if bad_direction == "decrease":
        return -theta_upper, -theta_lower
    return theta_lower, theta_upper


def running_bounds(lower: FloatArray, upper: FloatArray) -> tuple[FloatArray, FloatArray]:
    """Return the running intersection ``(max_{s≤t} lower_s, min_{s≤t} upper_s)``."""
    low = np.where(np.isnan(lower), -np.inf, lower)
    up = np.where(np.isnan(upper), np.inf, upper)
    return np.maximum.accumulate(low, axis=-1), np.minimum.accumulate(up, axis=-1)
