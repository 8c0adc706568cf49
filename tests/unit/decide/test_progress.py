"""The rollout's pure progression: schedule, window closing, matched cells, commands."""

from __future__ import annotations

import numpy as np

from streammon.control.commands import make_command, verify
from streammon.decide.progress import (
    RolloutState,
    apply_command,
    build_cells,
    closed_windows,
    intended_fractions,
    progress,
    start_state,
)
from streammon.decide.strategies import fraction_at
from streammon.events import CohortSummary, MetricSpecWire, MetricSums, RolloutSpec
from tests.helpers import DECIDER_KEY, DEV_KEYS

KEY = DECIDER_KEY
ORIGIN = 1_000_000


def spec(**kw: object) -> RolloutSpec:
    fields: dict[str, object] = dict(
        rollout_id="r", baseline="v1", candidate="v2", window_ms=1000, grace_ms=500,
        metrics=[MetricSpecWire(name="label", kind="binary", bad_direction="decrease")],
        f0=0.1, growth=2.0, f_max=0.5, step_windows=2, min_samples_per_stage=10)
    fields.update(kw)
    return RolloutSpec(**fields)  # type: ignore[arg-type]


def state(**kw: object) -> RolloutState:
    return RolloutState(spec=spec(**kw), origin_ms=ORIGIN)


def summary(window: int, arm: str, label_sum: float, n: int, segment: str = "all",
            source: str = "p0") -> CohortSummary:
    return CohortSummary(
        rollout_id="r", window_start_ms=ORIGIN + window * 1000, window_ms=1000, segment=segment,
        arm=arm, source=source, score_hist=[0] * 10, watermark_ms=ORIGIN + (window + 1) * 1000,
        metrics={"label": MetricSums(n, label_sum, label_sum),
                 "error": MetricSums(n, 0.0, 0.0)})  # type: ignore[arg-type]


def test_schedule_is_geometric_and_capped() -> None:
    """f_t = min(f_max, f0 * r**t): 10%, 20%, 40%, then capped at 50%."""
    s = spec()
    assert [fraction_at(s, t) for t in range(5)] == [0.1, 0.2, 0.4, 0.5, 0.5]


def test_windows_close_only_after_grace() -> None:
    """A window closes when event time passes its end plus the grace period."""
    st = state()
    assert closed_windows(st, ORIGIN + 1000 + 499) == 0
    assert closed_windows(st, ORIGIN + 1000 + 500) == 1
    assert closed_windows(st, ORIGIN + 3_700) == 3


def test_cells_add_sources_and_keep_segments_apart() -> None:
    """Summaries of one cell from two partitions add up; segments stay separate columns."""
    st = state()
    rows = [summary(0, "canary", 3, 10, "web", "p0"), summary(0, "canary", 2, 5, "web", "p1"),
            summary(0, "baseline", 7, 20, "app", "p0")]
    grid = build_cells(st, rows, 1)
    label, assignment = grid.cells["label"], grid.assignment
    assert label["n_b"].tolist() == [[0.0, 15.0]]  # segments sorted: app, web
    assert label["sum_b"].tolist() == [[0.0, 5.0]]
    assert label["n_a"].tolist() == [[20.0, 0.0]]
    assert assignment["n_b"].tolist() == [15.0]
    assert np.isnan(assignment["fraction"]).all()  # no start recorded: no split to check


def test_summaries_before_the_origin_are_ignored() -> None:
    """Traffic from before the rollout started never enters its cells."""
    st = state()
    early = summary(-1, "canary", 1, 1)
    assert build_cells(st, [early], 1).cells["label"]["n_b"].sum() == 0


def test_windows_the_switch_touches_are_left_out_of_the_ratio_check() -> None:
    """Windows overlapping a stage change (plus the routers' switch margin) get NaN, the
    others their stage's fraction, wherever in time the decision fell."""
    st = state()
    st.stage_changes = [(ORIGIN + 300, 0), (ORIGIN + 3_900, 1)]
    fractions = intended_fractions(st, 7, switch_margin_ms=500)
    assert np.isnan(fractions[[0, 3, 4]]).all()
    assert fractions[[1, 2, 5, 6]].tolist() == [0.1, 0.1, 0.2, 0.2]


def test_apply_command_ignores_old_sequence_numbers() -> None:
    """A command whose seq is not newer than the state's changes nothing."""
    st = state()
    st.seq = 3
    cmd = make_command(rollout_id="r", seq=3, action="rollback", baseline="v1",
                               candidate="v2", fraction=0.0, now_ms=0)
    assert apply_command(st, cmd).phase == "running"
    newer = make_command(rollout_id="r", seq=4, action="hold", baseline="v1",
                                 candidate="v2", fraction=0.1, now_ms=0)
    assert apply_command(st, newer).phase == "held"


def test_start_state_aligns_origin_to_the_window() -> None:
    """The first decision window starts at the start command's time floored to the window."""
    cmd = make_command(rollout_id="r", seq=1, action="start", baseline="v1",
                               candidate="v2", fraction=0.1, now_ms=ORIGIN + 1234, spec=spec())
    assert start_state(cmd).origin_ms == ORIGIN + 1000


def test_progress_rolls_back_a_clearly_worse_canary_with_a_signed_command() -> None:
    """A canary converting at 5% against 30% is rolled back, by a verifiable signed command."""
    st = state(min_samples_per_stage=10**9)
    rows = []
    for w in range(12):
        rows += [summary(w, "baseline", 0.30 * 900, 900), summary(w, "canary", 0.05 * 100, 100)]
    diagnoses, commands, reports = progress(st, rows, ORIGIN + 12_600, now_ms=5, key=KEY)
    assert [c.action for c in commands] == ["rollback"]
    verify(commands[0], DEV_KEYS)
    assert commands[0].seq == 2 and commands[0].weights == {"v1": 1.0}
    assert st.phase == "rolled_back"
    assert diagnoses[-1].action == "rollback"
    assert len(reports) == 1 and reports[0].metrics[0].failed


def test_rollback_report_tells_the_story() -> None:
    """The post-mortem names the failed metric, its bounds after every window (excluding 0
    at the end), the restored pinned version and the commands in order."""
    st = state(min_samples_per_stage=10**9)
    rows = []
    for w in range(40):
        rows += [summary(w, "baseline", 0.30 * 900, 900, "web"),
                 summary(w, "canary", 0.22 * 100, 100, "web"),
                 summary(w, "baseline", 0.30 * 900, 900, "app"),
                 summary(w, "canary", 0.22 * 100, 100, "app")]
    report = progress(st, rows, ORIGIN + 40_600, now_ms=5, key=KEY).reports[0]
    label = report.metrics[0]
    assert label.name == "label" and label.failed
    assert len(label.overall) == report.windows_closed
    assert label.overall[-1].upper < 0 < label.overall[1].upper
    assert set(label.by_segment) == {"app", "web"}
    assert report.restored_version == "v1"
    assert [c.action for c in report.commands] == ["rollback"]


def test_progress_steps_after_enough_clean_windows() -> None:
    """With no difference the canary steps up after step_windows windows in the stage."""
    st = state()
    rows = []
    for w in range(4):
        rows += [summary(w, "baseline", 90, 900), summary(w, "canary", 10, 100)]
    commands = progress(st, rows, ORIGIN + 4_600, now_ms=5, key=KEY).commands
    assert commands and commands[0].action == "step"
    assert commands[0].fraction == 0.2 and st.stage == 1


def test_progress_does_nothing_once_rolled_back() -> None:
    """A rolled-back rollout is never assessed again."""
    st = state()
    st.phase = "rolled_back"
    assert progress(st, [summary(0, "canary", 1, 1)], ORIGIN + 9_000, now_ms=0,
                    key=KEY) == ([], [], [])


def test_a_restarted_decider_rebuilds_its_incremental_state_and_decides_alike() -> None:
    """A decider that restarts (a fresh assessor, state rebuilt from the summaries) before
    every window sends the same diagnoses and commands as one that kept its state."""
    from streammon.decide.assessor import RolloutAssessor

    rng = np.random.default_rng(5)
    rows = []
    for w in range(12):
        for arm, n, p in (("baseline", 900, 0.10), ("canary", 100, 0.07)):
            rows.append(summary(w, arm, float(rng.binomial(n, p)), n))
    kept, restarted = state(), state()
    assessor = RolloutAssessor()
    for w in range(1, 13):
        now = ORIGIN + w * 1000 + 600
        seen = [s for s in rows if s.window_start_ms < ORIGIN + w * 1000]
        a = progress(kept, seen, now, now_ms=5, key=KEY, assessor=assessor)
        b = progress(restarted, seen, now, now_ms=5, key=KEY, assessor=RolloutAssessor())
        assert [(d.action, d.verdict, d.message) for d in a.diagnoses] == \
            [(d.action, d.verdict, d.message) for d in b.diagnoses]
        assert [c.action for c in a.commands] == [c.action for c in b.commands]
    assert kept.phase == restarted.phase
    assert kept.commands == restarted.commands and len(kept.commands) >= 2


def test_outcome_metrics_are_frozen_once_judged_a_window_later() -> None:
    """Without horizon_ms, the label is frozen one window after its window closes and a
    summary revised after that never changes the judged cells; errors, known with the
    prediction, are judged at close and need no copy (the join drops late predictions)."""
    st = state(metrics=[MetricSpecWire(name="label", kind="binary", bad_direction="decrease"),
                        MetricSpecWire(name="error", kind="binary", bad_direction="increase")])
    rows = [summary(w, arm, 90 if arm == "baseline" else 10, 900 if arm == "baseline" else 100)
            for w in range(3) for arm in ("baseline", "canary")]
    progress(st, rows, ORIGIN + 3_600, now_ms=5, key=KEY)
    assert "error" not in st.frozen
    assert sorted(st.frozen["label"]) == ["0", "1"]
    judged = {m: {w: dict(row) for w, row in rows_.items()} for m, rows_ in st.frozen.items()}
    revised = CohortSummary(
        rollout_id="r", window_start_ms=ORIGIN, window_ms=1000, segment="all", arm="canary",
        source="p0", score_hist=[0] * 10, watermark_ms=ORIGIN + 4000,
        metrics={"label": MetricSums(100, 0.0, 0.0), "error": MetricSums(100, 0.0, 0.0)})
    rows = [r for r in rows if r.cell != revised.cell] + [revised]
    rows += [summary(3, arm, 90 if arm == "baseline" else 10, 900 if arm == "baseline" else 100)
             for arm in ("baseline", "canary")]
    out = progress(st, rows, ORIGIN + 4_600, now_ms=6, key=KEY)
    assert all(c.action != "rollback" for c in out.commands)
    for metric, windows in judged.items():
        for w, row in windows.items():
            assert st.frozen[metric][w] == row
