"""The report: analysis of a decided rollout, charts and the self-contained page."""

from __future__ import annotations

import base64
import re
from pathlib import Path

import numpy as np
import pytest

from streammon.control.commands import make_command
from streammon.decide import progress
from streammon.errors import ConfigError
from streammon.events import (
    SCORE_BINS,
    CohortSummary,
    Command,
    Diagnosis,
    MetricSpecWire,
    MetricSums,
    RolloutSpec,
)
from streammon.ops.report import build_report, write_report
from streammon.ops.report_analysis import analyse
from streammon.ops.status import RolloutEvents
from tests.helpers import DECIDER_KEY

T0_MS = 1_700_000_000_000
KEY = DECIDER_KEY


def spec(rollout_id: str = "r-report") -> RolloutSpec:
    return RolloutSpec(
        rollout_id=rollout_id, baseline="v1", candidate="v2",
        metrics=[MetricSpecWire(name="label", kind="binary", bad_direction="decrease",
                                margin=0.03),
                 MetricSpecWire(name="latency_ms", kind="continuous", bad_direction="increase",
                                margin=5.0)],
        alpha=0.05, f0=0.1, growth=2.0, f_max=0.5, step_windows=3, min_samples_per_stage=100,
        window_ms=2000, grace_ms=500, ttl_ms=30_000)


def _sums(rng: np.random.Generator, xs: np.ndarray) -> MetricSums:
    return MetricSums(int(xs.size), float(xs.sum()), float((xs**2).sum()))


def _cell(rng: np.random.Generator, s: RolloutSpec, start_ms: int, segment: str, arm: str,
          n: int, slow_ms: float) -> CohortSummary:
    latency = rng.normal(40.0 + slow_ms, 5.0, n)
    labels = (rng.random(n) < 0.2).astype(float)
    scores = rng.beta(2, 5 if arm == "baseline" else 3.5, n)  # the canary scores higher
    hist = np.bincount(np.minimum((scores * SCORE_BINS).astype(int), SCORE_BINS - 1),
                       minlength=SCORE_BINS)
    return CohortSummary(rollout_id=s.rollout_id, window_start_ms=start_ms, window_ms=1000,
                         segment=segment, arm=arm, source="p0",  # type: ignore[arg-type]
                         metrics={"label": _sums(rng, labels), "latency_ms": _sums(rng, latency),
                                  "error": _sums(rng, np.zeros(n))},
                         score_hist=[int(x) for x in hist], watermark_ms=start_ms + 1000)


def decided_rollout(*, regress_at_window: int | None = 10, windows: int = 30,
                    rate: int = 300) -> tuple[list[CohortSummary], list[Command],
                                              list[Diagnosis]]:
    """Run the pure decider over synthetic windows; the canary's latency jumps +15 ms
    in the web segment from ``regress_at_window`` on."""
    rng = np.random.default_rng(5)
    s = spec()
    start = make_command(rollout_id=s.rollout_id, seq=1, action="start",
                                 baseline="v1", candidate="v2", fraction=s.f0, now_ms=T0_MS,
                                 key=KEY, issued_by="operator", spec=s, reason="started")
    state = progress.start_state(start)
    summaries: list[CohortSummary] = []
    commands, diagnoses = [start], []
    for w in range(windows * 2):  # join windows of 1 s, decision windows of 2 s
        f = state.fraction
        for segment, share in (("mobile", 0.6), ("web", 0.4)):
            n_total = int(rate * share)
            slow = 15.0 if (regress_at_window is not None and w // 2 >= regress_at_window
                            and segment == "web") else 0.0
            start_ms = state.origin_ms + w * 1000
            summaries.append(_cell(rng, s, start_ms, segment, "baseline",
                                   int(n_total * (1 - f)), 0.0))
            summaries.append(_cell(rng, s, start_ms, segment, "canary", int(n_total * f), slow))
        now = state.origin_ms + (w + 1) * 1000 + s.grace_ms + 1
        out = progress.progress(state, summaries, now, now_ms=now, key=KEY)
        diagnoses += out.diagnoses
        commands += out.commands
    return summaries, commands, diagnoses


@pytest.fixture(scope="module")
def rolled_back() -> tuple[list[CohortSummary], list[Command], list[Diagnosis]]:
    return decided_rollout()


def test_synthetic_rollout_is_rolled_back_for_latency(rolled_back: tuple) -> None:
    """The synthetic regression makes the pure decider ramp, then roll back on latency."""
    _, commands, _ = rolled_back
    actions = [c.action for c in commands]
    assert actions[0] == "start" and "step" in actions and actions[-1] == "rollback"
    assert "latency_ms" in commands[-1].reason


def test_analysis_explains_the_rollback_with_the_decisive_window(rolled_back: tuple) -> None:
    """The analysis ends rolled back; its final diagnosis shows latency harm, and the ramp
    has one observed canary share per closed window near the intended fraction."""
    summaries, commands, diagnoses = rolled_back
    a = analyse("r-report", summaries, commands, diagnoses)
    assert a.phase == "rolled_back"
    final = a.final_diagnosis
    assert final is not None and final.action == "rollback"
    assert {m.name: m.verdict for m in final.metrics}["latency_ms"] == "Rollback"
    assert len(a.observed_fraction) == len(a.window_t_s) == final.windows_closed
    assert abs(a.observed_fraction[1] - 0.1) < 0.02
    assert [m.name for m in a.metrics] == ["label", "latency_ms"]
    assert len(a.metrics[1].t_s) == len(diagnoses)


def test_segment_effects_locate_the_regression_in_web(rolled_back: tuple) -> None:
    """Per-segment confidence sequences show latency harm in `web` only (the effect is
    averaged over all windows, most of them before the regression)."""
    a = analyse("r-report", *rolled_back)
    latency = {s.segment: s for s in a.segments if s.metric == "latency_ms"}
    assert set(latency) == {"mobile", "web"}
    assert latency["web"].harm and not latency["mobile"].harm
    assert latency["web"].effect > 0.5 and latency["web"].lower > 0.0
    assert abs(latency["mobile"].effect) < 0.5


def test_sample_ratio_and_drift_checks(rolled_back: tuple) -> None:
    """A router that splits as intended passes the SRM check; the shifted canary scores
    show up as drift."""
    a = analyse("r-report", *rolled_back)
    assert a.srm.windows > 0 and not a.srm.mismatch
    assert abs(a.srm.observed - a.srm.intended) < 0.02
    assert a.drift.windows > 0 and a.drift.shown


def test_sample_ratio_mismatch_is_flagged() -> None:
    """A canary that gets half its intended share is flagged as a sample-ratio mismatch."""
    summaries, commands, diagnoses = decided_rollout(regress_at_window=None, windows=8)
    thinned = [CohortSummary(**{**{f: getattr(s, f) for f in s.__struct_fields__},
                                "metrics": {k: MetricSums(v.n // 2, v.sum / 2, v.sumsq / 2)
                                            for k, v in s.metrics.items()}})
               if s.arm == "canary" else s for s in summaries]
    a = analyse("r-report", thinned, commands, diagnoses)
    assert a.srm.mismatch


def test_analysis_needs_the_start_command(rolled_back: tuple) -> None:
    """Without the start command (and its spec) the analysis refuses with ConfigError."""
    summaries, commands, diagnoses = rolled_back
    with pytest.raises(ConfigError, match="no start command"):
        analyse("r-report", summaries, commands[1:], diagnoses)


def test_report_page_names_every_metric_and_marks_the_rollback(rolled_back: tuple,
                                                               tmp_path: Path) -> None:
    """The HTML is self-contained (PNG data URIs, no external references), states the
    rollback and its reason, names every metric, and every chart is also a PNG file."""
    report = build_report(RolloutEvents.from_lists("r-report", *rolled_back))
    page = report.html
    assert "ROLLED BACK" in page and "harm: latency_ms" in page
    for metric in ("label", "latency_ms"):
        assert f"effect_{metric}" in report.charts and metric in page
    assert {"ramp", "drift", "segments_latency_ms"} <= set(report.charts)
    images = re.findall(r'src="data:image/png;base64,([^"]+)"', page)
    assert len(images) == len(report.charts)
    assert all(base64.b64decode(i).startswith(b"\x89PNG") for i in images)
    assert not re.search(r'(src|href)="(http|//)', page)
    out = write_report(report, tmp_path / "rep")
    assert out.read_text().count("data:image/png") == len(report.charts)
    assert {p.stem for p in (tmp_path / "rep").glob("*.png")} == set(report.charts)


def test_report_of_a_running_rollout_has_no_rollback_marker() -> None:
    """A healthy rollout still ramping is reported as running, without a rollback."""
    summaries, commands, diagnoses = decided_rollout(regress_at_window=None, windows=6)
    report = build_report(RolloutEvents.from_lists("r-report", summaries, commands, diagnoses))
    assert report.analysis.phase == "running"
    assert "ROLLED BACK" not in report.html and "RUNNING" in report.html


def test_events_keep_the_latest_summary_and_ignore_other_rollouts(rolled_back: tuple) -> None:
    """RolloutEvents keeps one summary per cell key (the latest) and drops other rollouts."""
    summaries, commands, diagnoses = rolled_back
    other = CohortSummary(**{**{f: getattr(summaries[0], f)
                                for f in summaries[0].__struct_fields__}, "rollout_id": "x"})
    data = RolloutEvents.from_lists("r-report", [*summaries, summaries[0], other], commands,
                                    diagnoses)
    assert len(data.summaries) == len(summaries)
    assert [c.seq for c in data.commands] == sorted(c.seq for c in commands)
