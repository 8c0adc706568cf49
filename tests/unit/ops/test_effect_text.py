"""Effects and bounds read the same in every view, and crossed bounds are said in words."""

import math

import pytest

from streammon.ops.effect_text import (
    CHANGED,
    describe_metric,
    format_bounds,
    format_count,
    format_effect,
    format_estimate,
)


def test_rates_read_in_percentage_points_and_latency_in_ms() -> None:
    """A conversion effect of -0.0147 reads -1.5pp; a latency effect of 2.28 reads +2.3ms."""
    assert format_estimate("label", -0.0147, -0.0568, 0.0274) == "conversion -1.5pp [-5.7, +2.7]"
    assert format_estimate("latency_ms", 2.28, 0.92, 3.6) == "latency +2.3ms [+0.92, +3.6]"


def test_crossed_bounds_are_never_printed_as_an_interval() -> None:
    """Lower above upper means the effect changed; the text says so instead of [+0.9, +0.2]."""
    assert format_bounds("latency_ms", 0.92, 0.2) == CHANGED
    assert "[" not in format_estimate("latency_ms", 2.28, 0.92, 0.2)


def test_rate_bounds_never_exceed_100_pp() -> None:
    """A rate difference lies in [-100, +100] pp, so wider early bounds are clipped there."""
    assert format_bounds("label", -1.552, 1.461) == "[-100.0, +100.0]"
    assert format_bounds("latency_ms", -155.2, 146.1) == "[-155.2, +146.1]"


def test_unbounded_and_missing_values() -> None:
    """Infinite bounds print as inf, a missing effect as n/a."""
    assert format_bounds("latency_ms", -math.inf, 4.86) == "[-inf, +4.9]"
    assert format_effect("label", math.nan) == "n/a"


@pytest.mark.parametrize(("n", "text"), [(987, "987"), (98_765, "98.8k"), (987_654, "987k"),
                                         (1_234_567, "1.23M"), (12_345_678, "12.3M")])
def test_counts_fit_five_characters(n: int, text: str) -> None:
    """Sample sizes never need more than five characters, so tables fit 80 columns."""
    assert format_count(n) == text


def test_an_estimate_outside_its_running_bounds_is_called_changing() -> None:
    """Bounds that no longer contain the latest estimate are not presented as describing it."""
    assert (format_estimate("latency_ms", 10.2, 7.4, 8.2)
            == "latency +10.2ms [+7.4, +8.2] (effect changed)")
    assert format_estimate("latency_ms", 7.8, 7.4, 8.2) == "latency +7.8ms [+7.4, +8.2]"
    assert format_estimate("latency_ms", 1.0, 0.5, 2.0, changed=True).endswith("(effect changed)")


def test_crossed_bounds_say_effect_changed_once() -> None:
    """Crossed bounds read as one "(effect changed)", not "effect changed (changing)"."""
    assert format_estimate("latency_ms", 8.7, 6.4, 2.9) == "latency +8.7ms (effect changed)"


def test_metric_description_names_spec_name_direction_and_margin_in_units() -> None:
    """A legend entry ties the display name to the spec's name and the margin in its units."""
    assert describe_metric("label", "decrease", 0.03) == (
        "conversion (label): lower is worse; non-inferiority margin 3pp")
    assert describe_metric("latency_ms", "increase", 5.0) == (
        "latency (latency_ms): higher is worse; non-inferiority margin 5ms")
    assert describe_metric("ctr", "decrease", 0.5) == (
        "ctr: lower is worse; non-inferiority margin 0.5")
