"""Event-level replay: streammon.backtest.replay_events and `streammon backtest --spec`."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from streammon import backtest, cli
from streammon.backtest import ReplayCounts, replay_events
from streammon.decide import event_replay
from streammon.errors import ConfigError
from streammon.sim.event_draws import EventPlan, draw_events

RAMP = (0.05, 0.1, 0.2, 0.4, 0.5)
WINDOW_MS = 60_000


def spec(**kw: Any) -> dict[str, Any]:
    base: dict[str, Any] = {
        "rollout_id": "sim", "baseline": "baseline", "candidate": "canary",
        "metrics": [{"name": "label", "kind": "binary", "bad_direction": "decrease",
                     "margin": 0.01}],
        "f0": 0.05, "f_max": 0.5, "step_windows": 5, "window_ms": WINDOW_MS,
        "grace_ms": 10_000}
    base.update(kw)
    return base


def plan(**kw: Any) -> EventPlan:
    base: dict[str, Any] = {"windows": 30, "requests_per_window": 1500, "fractions": RAMP,
                            "step_windows": 5}
    base.update(kw)
    return EventPlan(**base)


def test_one_decision_per_closed_window_in_order() -> None:
    """Each closed window gets one dict with window, action and reason, numbered from 0."""
    preds, outs = draw_events(plan(windows=12), seed=1)
    decisions = replay_events(spec(), preds, outs)
    assert [d["window"] for d in decisions] == list(range(12))
    assert all(set(d) == {"window", "action", "reason"} for d in decisions)
    assert all(d["action"] in {"continue", "step", "hold", "rollback", "promote"}
               for d in decisions)
    assert all(isinstance(d["reason"], str) and d["reason"] for d in decisions)
    assert [d["window"] for d in decisions if d["action"] == "step"] == [4, 9]


def test_a_harmful_candidate_is_rolled_back_and_nothing_follows() -> None:
    """A 30% conversion drop rolls back, and the list ends at the rollback."""
    preds, outs = draw_events(plan(effect=(-0.3,)), seed=2)
    decisions = replay_events(spec(), preds, outs)
    assert decisions[-1]["action"] == "rollback"
    assert "label" in decisions[-1]["reason"]
    assert len(decisions) < 30
    assert all(d["action"] != "rollback" for d in decisions[:-1])


def test_a_better_candidate_is_promoted_and_nothing_follows() -> None:
    """A clearly better candidate is promoted at the last stage, and the list ends there."""
    preds, outs = draw_events(plan(windows=60, effect=(0.2,)), seed=3)
    decisions = replay_events(spec(), preds, outs)
    assert decisions[-1]["action"] == "promote"
    assert decisions[-1]["window"] >= 20  # only at the last stage (f = 0.5 from window 20)
    assert len(decisions) < 60


@pytest.mark.parametrize("k", [3, 9, 16])
def test_a_decision_never_depends_on_events_after_its_window(k: int) -> None:
    """Dropping or changing every event after window k leaves decisions 0..k unchanged."""
    p = plan(windows=25)
    preds, outs = draw_events(p, seed=4)
    worse, worse_outs = draw_events(plan(windows=25, effect=(-0.5,)), seed=5)
    end_ms = p.start_ms + (k + 1) * WINDOW_MS
    full = replay_events(spec(), preds, outs)
    cut = replay_events(spec(), [e for e in preds if e["ts_ms"] < end_ms],
                        [e for e in outs if e["ts_ms"] < end_ms])
    swapped = replay_events(
        spec(), [e for e in preds if e["ts_ms"] < end_ms]
        + [e for e in worse if e["ts_ms"] >= end_ms],
        [e for e in outs if e["ts_ms"] < end_ms] + [e for e in worse_outs
                                                    if e["ts_ms"] >= end_ms])
    assert cut == full[:k + 1]
    assert swapped[:k + 1] == full[:k + 1]


def test_input_order_does_not_matter() -> None:
    """Events are taken in event time, so a shuffled input gives the same decisions."""
    preds, outs = draw_events(plan(windows=15), seed=6)
    assert replay_events(spec(), preds[::-1], outs[::-1]) == replay_events(spec(), preds, outs)


def test_a_broken_router_holds_the_rollout_with_the_reason() -> None:
    """Losing 40% of canary predictions halts on the sample-ratio check; later windows hold."""
    preds, outs = draw_events(plan(windows=20, srm_canary_loss=0.4, srm_windows=(0, 20)),
                              seed=7)
    decisions = replay_events(spec(), preds, outs)
    holds = [d for d in decisions if d["action"] == "hold"]
    assert holds and "sample-ratio" in holds[0]["reason"]
    first = decisions.index(holds[0])
    assert all(d["action"] == "hold" for d in decisions[first:])
    assert len(decisions) == 20


def test_an_operator_resume_lets_a_held_rollout_continue() -> None:
    """A resume command at event time restarts decisions after a hold."""
    p = plan(windows=20, step_windows=0)  # the recorded routers stay at 5% throughout
    preds, outs = draw_events(p, seed=8)
    hold_ms, resume_ms = p.start_ms + 2 * WINDOW_MS + 5, p.start_ms + 6 * WINDOW_MS + 5
    decisions = replay_events(spec(step_windows=100), preds, outs, commands=[
        {"action": "hold", "ts_ms": hold_ms, "reason": "look at logs"},
        {"action": "resume", "ts_ms": resume_ms}])
    assert [d["action"] for d in decisions[2:6]] == ["hold"] * 4
    assert "look at logs" in decisions[2]["reason"]
    assert [d["action"] for d in decisions[6:]] == ["continue"] * 14


def test_malformed_and_foreign_events_are_skipped_and_counted() -> None:
    """Bad events and other rollouts' events are counted, and the decisions are unchanged."""
    preds, outs = draw_events(plan(windows=8), seed=9)
    counts = ReplayCounts()
    noisy = [*preds, {"request_id": "x"}, {**preds[0], "rollout_id": "other",
                                            "request_id": "o1"}, None]
    decisions = replay_events(spec(), noisy, [*outs, {"request_id": "y", "label": 3}],
                              counts=counts)
    assert decisions == replay_events(spec(), preds, outs)
    assert (counts.malformed, counts.other_rollouts) == (3, 1)
    assert counts.predictions == len(preds)


def test_a_bad_spec_names_the_field() -> None:
    """A spec with a bad field raises ConfigError naming it."""
    with pytest.raises(ConfigError, match="alpha"):
        replay_events(spec(alpha=2.0), [], [])


def test_no_predictions_means_no_decisions() -> None:
    """Without predictions no window of the rollout has closed."""
    assert replay_events(spec(), [], []) == []


def test_the_cli_prints_the_same_decisions_as_the_function(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """`streammon backtest --spec --predictions --outcomes` prints replay_events' dicts."""
    preds, outs = draw_events(plan(windows=10, effect=(-0.4,)), seed=10)
    files = {"spec": tmp_path / "rollout.json", "p": tmp_path / "P.jsonl",
             "o": tmp_path / "O.jsonl"}
    files["spec"].write_text(json.dumps(spec()))
    files["p"].write_text("\n".join(json.dumps(e) for e in preds) + "\n\nnot json\n")
    files["o"].write_text("\n".join(json.dumps(e) for e in outs))
    code = cli.main(["backtest", "--spec", str(files["spec"]), "--predictions", str(files["p"]),
                     "--outcomes", str(files["o"])])
    out = capsys.readouterr()
    assert code == 0
    printed = [json.loads(line) for line in out.out.splitlines()]
    assert printed == replay_events(spec(), preds, outs)
    assert "1 malformed" in out.err


def test_the_replay_loads_no_kafka_faust_or_redis_and_reads_no_clock() -> None:
    """Importing streammon.backtest loads no I/O library, and it never calls a clock."""
    code = ("import sys, streammon.backtest\n"
            "print(sorted(m for m in sys.modules if m.split('.')[0] in "
            "('confluent_kafka', 'faust', 'aiokafka', 'redis', 'mode')))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True)
    assert out.stdout.strip() == "[]"
    source = Path(backtest.__file__).read_text() + Path(event_replay.__file__).read_text()
    assert not re.search(r"\btime\.(time|monotonic)|datetime\.now", source)


def test_after_a_resume_the_sample_ratio_check_starts_afresh() -> None:
    """A rollout halted by a broken router, fixed and resumed, does not halt again."""
    p = plan(windows=30, step_windows=0, srm_canary_loss=0.5, srm_windows=(0, 8))
    preds, outs = draw_events(p, seed=11)
    resume_ms = p.start_ms + 10 * WINDOW_MS + 5
    decisions = replay_events(spec(step_windows=100), preds, outs,
                              commands=[{"action": "resume", "ts_ms": resume_ms}])
    first_hold = next(d["window"] for d in decisions if d["action"] == "hold")
    assert first_hold < 8 and "sample-ratio" in decisions[first_hold]["reason"]
    assert [d["action"] for d in decisions[10:]] == ["continue"] * 20


def _horizon_spec(horizon_ms: int | None, **kw: Any) -> dict[str, Any]:
    label: dict[str, Any] = {"name": "label", "kind": "binary", "bad_direction": "decrease",
                             "margin": 0.01}
    if horizon_ms is None:
        label["label_delay_windows"] = 2
    else:
        label["horizon_ms"] = horizon_ms
    return spec(metrics=[label], step_windows=100, **kw)


def test_a_judged_cohort_is_frozen_so_late_labels_never_revise_it() -> None:
    """Outcomes arriving after a cohort was judged change nothing, with an explicit horizon
    or the default one; a horizon long enough to take them in lets them decide."""
    p = plan(windows=20, step_windows=0, label_missing=(0.3, 0.3))
    preds, outs = draw_events(p, seed=12)
    labelled = {o["request_id"] for o in outs}
    late = [{"v": 1, "request_id": e["request_id"], "rollout_id": "sim",
             "ts_ms": e["ts_ms"] + 5 * WINDOW_MS, "label": 0.0 if e["arm"] == "canary" else 1.0}
            for e in preds if e["request_id"] not in labelled]
    for horizon_ms in (90_000, None):
        frozen = replay_events(_horizon_spec(horizon_ms), preds, outs)
        assert replay_events(_horizon_spec(horizon_ms), preds, outs + late) == frozen
    counted = replay_events(_horizon_spec(7 * WINDOW_MS), preds, outs + late)
    assert counted[-1]["action"] == "rollback"  # within the horizon, late labels count


def test_default_horizons_one_window_for_outcomes_zero_for_prediction_metrics() -> None:
    """Without horizon_ms a label is judged one window late (value: its
    label_delay_windows), latency and errors when their window closes."""
    from streammon.decide.attribution import horizon_ms_of, judge_delay_windows
    from streammon.decide.spec import parse_spec

    checked = parse_spec(spec(metrics=[
        {"name": "label", "kind": "binary", "bad_direction": "decrease"},
        {"name": "value", "kind": "continuous", "bad_direction": "decrease",
         "label_delay_windows": 3},
        {"name": "latency_ms", "kind": "continuous", "bad_direction": "increase"},
        {"name": "error", "kind": "binary", "bad_direction": "increase"}]))
    assert [horizon_ms_of(checked, m) for m in checked.metrics] == [
        WINDOW_MS, 3 * WINDOW_MS, 0, 0]
    assert [judge_delay_windows(checked, m) for m in checked.metrics] == [1, 3, 0, 0]


def test_a_horizon_beyond_the_join_ttl_is_refused_naming_the_field() -> None:
    """A horizon longer than ttl_ms (outcomes the join would drop) names metrics[i].horizon_ms."""
    from streammon.decide.spec import parse_spec

    with pytest.raises(ConfigError, match=r"metrics\[0\]\.horizon_ms .*ttl_ms"):
        parse_spec(_horizon_spec(2 * 3_600_000))
    with pytest.raises(ConfigError, match=r"metrics\[0\]\.horizon_ms"):
        parse_spec(_horizon_spec(-1))


def test_labels_missing_in_one_arm_hold_the_rollout_with_the_reason() -> None:
    """Canary outcomes lost 30% of the time hold the rollout; they do not bias it silently."""
    preds, outs = draw_events(plan(windows=20, step_windows=0, label_missing=(0.0, 0.3)),
                              seed=13)
    decisions = replay_events(_horizon_spec(60_000), preds, outs)
    holds = [d for d in decisions if d["action"] == "hold"]
    assert holds and "label coverage of label differs by arm" in holds[0]["reason"]
    assert all(d["action"] != "rollback" for d in decisions)


def test_events_built_with_numpy_and_python_types_are_taken() -> None:
    """numpy timestamps, float ts_ms, boolean labels and event structs decode like JSON."""
    import numpy as np

    from streammon.events import Prediction

    preds, outs = draw_events(plan(windows=6), seed=14)
    mixed_preds: list[Any] = [
        {**e, "ts_ms": np.int64(e["ts_ms"])} if i % 3 == 0
        else Prediction(**e) if i % 3 == 1 else {**e, "ts_ms": float(e["ts_ms"])}
        for i, e in enumerate(preds)]
    mixed_outs = [{**o, "label": bool(o["label"])} for o in outs]
    counts = ReplayCounts()
    assert replay_events(spec(), mixed_preds, mixed_outs, counts=counts) == replay_events(
        spec(), preds, outs)
    assert counts.malformed == 0


@pytest.mark.parametrize("seed", [1, 2])
def test_sticky_units_do_not_trip_the_sample_ratio_check(seed: int) -> None:
    """Users with ten requests each per window make request counts overdispersed, but the
    check counts first exposures of units, which are exactly binomial: no hold."""
    p = plan(windows=15, units=3_000, active_units=150, unit_sd=0.5, fractions=(0.2,),
             step_windows=0)
    preds, outs = draw_events(p, seed=seed)
    decisions = replay_events(spec(strategy="stages", stages=[0.2], step_windows=100),
                              preds, outs)
    assert len(decisions) == 15
    assert all(d["action"] == "continue" for d in decisions), decisions


def test_a_unit_counts_once_in_the_first_exposure_cells() -> None:
    """The error metric's n (the sample-ratio check's counts) is the number of distinct
    units at their first window, not the number of requests; every request of a unit
    outside its first window is excluded and counted."""
    from streammon.events import Prediction
    from streammon.join.state import JoinConfig, JoinState

    p = plan(windows=4, units=500, active_units=100, fractions=(0.2,), step_windows=0)
    preds, _ = draw_events(p, seed=3)
    state = JoinState(config=JoinConfig(window_ms=WINDOW_MS, ttl_ms=3_600_000))
    for event in preds:
        state.add_prediction(Prediction(**event))
    first: dict[str, tuple[int, str]] = {}
    for event in preds:
        first.setdefault(event["unit_id"], (event["ts_ms"] // WINDOW_MS, event["arm"]))
    for (_, start_ms, _, arm), cell in state.cells.items():
        want = sum(1 for w, a in first.values() if w == start_ms // WINDOW_MS and a == arm)
        assert cell.sums["error"][0] == want
    later = sum(1 for e in preds if e["ts_ms"] // WINDOW_MS != first[e["unit_id"]][0])
    assert later and state.counters["unit_repeat_requests"] == later
