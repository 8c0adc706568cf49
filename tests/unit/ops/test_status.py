"""The status view: rendered from plain values, no Kafka or Redis."""

from __future__ import annotations

from rich.console import Console

from streammon.control.commands import RouteState
from streammon.events import Diagnosis, MetricEstimate, MetricSpecWire, RolloutSpec
from streammon.ops.rollout_grid import SrmCheck
from streammon.ops.status import next_step_text, render_status

NOW_MS = 1_700_000_100_000
SPEC = RolloutSpec(rollout_id="r1", baseline="v1", candidate="v2",
                   metrics=[MetricSpecWire(name="latency_ms", kind="continuous",
                                           bad_direction="increase")],
                   f0=0.1, f_max=0.5, step_windows=3, window_ms=2000, grace_ms=1000,
                   min_samples_per_stage=200)


def route(action: str = "step", phase: str = "running", fraction: float = 0.2,
          seq: int = 2, ts_ms: int = NOW_MS - 2000) -> RouteState:
    weights = {"v1": 1 - fraction, "v2": fraction} if fraction else {"v1": 1.0}
    return RouteState(rollout_id="r1", seq=seq, action=action, weights=weights,  # type: ignore[arg-type]
                      baseline="v1", candidate="v2", fraction=fraction, stage=1,
                      phase=phase, ts_ms=ts_ms, reason=f"{action} reason",  # type: ignore[arg-type]
                      issued_by="decider")


def diagnosis(verdict: str = "Rollback") -> Diagnosis:
    est = MetricEstimate(name="latency_ms", effect=3.2, rel_effect=0.08, lower=1.9, upper=4.4,
                         n_baseline=900, n_canary=800, verdict=verdict)
    return Diagnosis(rollout_id="r1", window_start_ms=NOW_MS - 4000, windows_closed=14,
                     stage=3, fraction=0.5, action="rollback", verdict=verdict,
                     metrics=[est], message="harm: latency_ms")


def text_of(renderable: object) -> str:
    console = Console(record=True, width=160, color_system=None)
    console.print(renderable)
    return console.export_text()


def test_rolled_back_status_shows_phase_metric_bounds_and_log() -> None:
    """A rolled-back rollout shows its phase, 0% canary, the metric's effect with bounds and
    verdict, the SRM line and the rollback at the end of the command log."""
    log = [route("start", fraction=0.1, seq=1), route(), route("rollback", "rolled_back", 0.0, 3)]
    out = text_of(render_status(rollout_id="r1", route=log[-1], log=log,
                                diagnosis=diagnosis(), spec=SPEC,
                                srm=SrmCheck(0.7, 0.001, 0.49, 0.5, 9), now_ms=NOW_MS))
    assert "ROLLED_BACK" in out and "canary 0.0% of traffic" in out
    assert "latency_ms" in out and "+3.2" in out and "[+1.9, +4.4]" in out
    assert "Rollback" in out and "harm: latency_ms" in out
    assert "canary 49.0% vs intended 50.0%" in out and ": ok" in out
    assert "ROLLBACK" in [line for line in out.splitlines() if line.strip()][-1]
    assert "next step: none - the rollout is rolled back" in out


def test_status_fits_80_columns_without_cutting_numbers() -> None:
    """Millions of requests, long ids and unbounded bounds still fit an 80-column terminal,
    every number whole (no ellipsis), and crossed bounds read as words."""
    ests = [MetricEstimate(name="label", effect=-0.01473, rel_effect=-0.0712, lower=-0.05682,
                           upper=0.02741, n_baseline=1_234_567, n_canary=987_654,
                           verdict="Running"),
            MetricEstimate(name="latency_ms", effect=2.2812, rel_effect=0.0531, lower=0.9212,
                           upper=0.7634, n_baseline=1_234_567, n_canary=987_654,
                           verdict="Rollback"),
            MetricEstimate(name="error", effect=0.0013, rel_effect=0.26, lower=-float("inf"),
                           upper=0.0485, n_baseline=12_345_678, n_canary=9_876_543,
                           verdict="Running")]
    d = Diagnosis(rollout_id="ranker-2026-11-26-canary", window_start_ms=NOW_MS - 4000,
                  windows_closed=114, stage=3, fraction=0.5, action="rollback",
                  verdict="Rollback", metrics=ests, message="harm: latency_ms")
    log = [route("start", fraction=0.1, seq=1), route(), route("rollback", "rolled_back", 0.0, 3)]
    console = Console(record=True, width=80, color_system=None)
    console.print(render_status(rollout_id="ranker-2026-11-26-canary", route=log[-1], log=log,
                                diagnosis=d, spec=SPEC, srm=SrmCheck(0.7, 0.001, 0.49, 0.5, 9),
                                now_ms=NOW_MS))
    out = console.export_text()
    assert max(len(line.rstrip()) for line in out.splitlines()) <= 80
    assert "…" not in out
    for text in ("-1.5pp", "[-5.7, +2.7]", "1.23M", "987k", "12.3M", "[-100.0, +4.9]",
                 "effect changed", "-7.1%"):
        assert text in out, text
    assert "[+0.92" not in out


def test_srm_mismatch_and_missing_route_are_explained() -> None:
    """Without route state the view says so; a mismatched split is flagged."""
    out = text_of(render_status(rollout_id="r9", route=None, log=[], diagnosis=None, spec=None,
                                srm=SrmCheck(1e-6, 0.001, 0.3, 0.5, 5), now_ms=NOW_MS))
    assert "no route state in Redis" in out and "no window assessed yet" in out
    assert "MISMATCH" in out


def test_time_to_next_step_counts_from_the_stage_start() -> None:
    """The next step is due step_windows windows plus grace after the stage began; at f_max
    the view says it promotes instead; when held it says none."""
    assert "in ~5 s" in next_step_text(route(ts_ms=NOW_MS - 2000), SPEC, NOW_MS)
    assert "due at the next closed window" in next_step_text(route(ts_ms=NOW_MS - 60_000),
                                                             SPEC, NOW_MS)
    assert "promotes" in next_step_text(route(fraction=0.5), SPEC, NOW_MS)
    assert "held" in next_step_text(route("hold", "held"), SPEC, NOW_MS)
    assert "unknown" in next_step_text(route(), None, NOW_MS)
