"""The post-mortem's text: the names and units people see elsewhere, never crossed bounds."""

from __future__ import annotations

import re

from streammon.decide.postmortem import render_text
from streammon.events import EffectPoint, MetricHistory, RollbackReport


def report(*metrics: MetricHistory) -> RollbackReport:
    return RollbackReport(rollout_id="r", reason="harm: latency_ms", ts_ms=0,
                          restored_version="v1", candidate="v2", windows_closed=12,
                          metrics=list(metrics), drift_p_value=0.5, srm_p_value=0.9,
                          commands=[])


def test_post_mortem_uses_display_names_and_never_shows_crossed_bounds() -> None:
    """Metrics are named as on the window lines (conversion, latency); bounds that crossed
    are left out and an effect outside its bounds is flagged as changed."""
    text = render_text(report(
        MetricHistory(name="latency_ms", failed=True, overall=[EffectPoint(0, 3.3, 2.3, 2.7)],
                      by_segment={"web": EffectPoint(0, 1.0, 3.0, 2.0)}),
        MetricHistory(name="label", failed=False,
                      overall=[EffectPoint(0, -0.0085, -0.042, 0.033)], by_segment={})))
    assert "FAILED latency +3.3ms [+2.3, +2.7] (effect changed)" in text
    assert "web: latency +1.0ms (effect changed)" in text
    assert "ok     conversion -0.85pp [-4.2, +3.3]" in text
    for lo, hi in re.findall(r"\[([-+\d.]+), ([-+\d.]+)\]", text):
        assert float(lo) <= float(hi)
