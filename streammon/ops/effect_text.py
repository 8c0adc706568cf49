"""How an effect and its confidence bounds read to people: one formatter for every view.

The status view, the demo's timeline and the report all show a metric's
canary-minus-baseline effect in the metric's own units (percentage points for rates,
milliseconds for latency) with its anytime-valid bounds. Bounds that cross (lower above
upper: the running intersection emptied because the effect changed mid-rollout) are
never printed as an interval; they are said in words. Pure.
"""

from __future__ import annotations

import math

UNITS: dict[str, tuple[str, float, str]] = {
    "label": ("conversion", 100.0, "pp"),
    "latency_ms": ("latency", 1.0, "ms"),
    "error": ("errors", 100.0, "pp"),
    "value": ("value", 1.0, ""),
}
"""metric name -> (what people call it, scale to display units, unit suffix)."""

CHANGED = "effect changed"
"""What crossed bounds say: no single effect fits every window so far."""


def display_units(name: str) -> tuple[float, str]:
    """Return (scale, unit) that turn metric ``name``'s values into display units."""
    _label, scale, unit = UNITS.get(name, (name, 1.0, ""))
    return scale, unit


def metric_title(name: str) -> str:
    """Return ``conversion (label)``: what people call it and the spec's name, once."""
    label = metric_label(name)
    return f"{label} ({name})" if label != name else name


def metric_label(name: str) -> str:
    """Return what people call metric ``name`` (``label`` reads as ``conversion``)."""
    return UNITS.get(name, (name, 1.0, ""))[0]


def _number(x: float, scale: float) -> str:
    if math.isinf(x) or abs(x) >= 1e299:
        return "+inf" if x > 0 else "-inf"
    return f"{x * scale:+.{_decimals(x * scale)}f}"


def _decimals(x: float) -> int:
    size = abs(x)
    return 1 if size >= 1 or size == 0 else (2 if size >= 0.1 else 3)


def format_effect(name: str, effect: float) -> str:
    """Return e.g. ``-1.3pp`` or ``+2.3ms``: the effect in the metric's display units."""
    _label, scale, unit = UNITS.get(name, (name, 1.0, ""))
    if math.isnan(effect):
        return "n/a"
    return f"{_number(effect, scale)}{unit}"


def format_bounds(name: str, lower: float, upper: float) -> str:
    """Return ``[-5.7, +2.7]`` in display units, or :data:`CHANGED` when the bounds cross.

    A difference of two rates lies in [-1, 1] whatever the evidence, so the bounds of a
    rate (shown in pp) are clipped to ±100 pp instead of printing ``[-155.2, +146.1]``.
    """
    _label, scale, unit = UNITS.get(name, (name, 1.0, ""))
    if lower > upper:
        return CHANGED
    if unit == "pp":
        lower, upper = max(lower, -1.0), min(upper, 1.0)
    return f"[{_number(lower, scale)}, {_number(upper, scale)}]"


def is_changing(effect: float, lower: float, upper: float, *, changed: bool = False) -> bool:
    """Return True when the evidence says the effect changed during the rollout.

    Either the decider flagged it (the running bounds emptied), or the latest estimate
    has left the running-intersected bounds: they still hold, but the effect moved on.
    """
    return changed or lower > upper or not (lower <= effect <= upper or math.isnan(effect))


def format_estimate(name: str, effect: float, lower: float, upper: float, *,
                    changed: bool = False) -> str:
    """Return e.g. ``conversion -1.3pp [-5.6, +3.1]``, plus ``(effect changed)`` when it moved.

    A changed effect is never shown as if the bounds described the latest estimate: bounds
    that still hold are kept and flagged; crossed bounds are left out (said once, in words).
    """
    text = f"{metric_label(name)} {format_effect(name, effect)}"
    if lower <= upper:
        text += f" {format_bounds(name, lower, upper)}"
    return f"{text} ({CHANGED})" if is_changing(effect, lower, upper, changed=changed) else text


def format_margin(name: str, margin: float) -> str:
    """Return a metric's margin in its display units without a sign: ``3pp``, ``5ms``."""
    _label, scale, unit = UNITS.get(name, (name, 1.0, ""))
    return f"{abs(margin) * scale:g}{unit}"


def describe_metric(name: str, bad_direction: str, margin: float) -> str:
    """Return e.g. ``conversion (label): lower is worse; non-inferiority margin 3pp``.

    Any significant harm rolls back; the margin is what promotion must exclude.
    """
    worse = "lower" if bad_direction == "decrease" else "higher"
    return (f"{metric_title(name)}: {worse} is worse; non-inferiority margin "
            f"{format_margin(name, margin)}")


METRIC_VERDICT_WORDS: dict[str, str] = {
    "Promote": "no worse", "Rollback": "HARM", "Running": "watching", "Pending": "waiting",
}
"""A metric's verdict as people read it: ``Promote`` on one metric means "shown no worse
than its margin", not that the rollout is being promoted."""


def metric_verdict(verdict: str) -> str:
    """Return what a per-metric verdict means in words (``Promote`` -> ``no worse``)."""
    return METRIC_VERDICT_WORDS.get(verdict, verdict.lower())


def format_count(n: int) -> str:
    """Return a count in at most five characters: ``987``, ``98.8k``, ``1.23M``."""
    if n < 10_000:
        return str(n)
    if n < 1_000_000:
        return f"{n / 1000:.1f}k" if n < 100_000 else f"{n // 1000}k"
    return f"{n / 1e6:.2f}M" if n < 10_000_000 else f"{n / 1e6:.1f}M"
