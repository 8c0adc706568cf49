"""The demo timeline prints each cause before its effect, whatever order the topics arrive in."""

from streammon.events import Command, Diagnosis, RollbackReport, RolloutSpec
from streammon.sim.demo_timeline import CauseFirst, legend_lines
from streammon.sim.serve import demo_spec


def _command(seq: int, action: str, issued_by: str = "decider") -> Command:
    return Command(rollout_id="r", seq=seq, action=action, weights={"a": 1.0}, baseline="a",
                   candidate="b", fraction=0.0, issued_by=issued_by)


def _diagnosis(window: int, action: str) -> Diagnosis:
    return Diagnosis(rollout_id="r", window_start_ms=0, windows_closed=window, stage=0,
                     fraction=0.5, action=action, verdict="Running", metrics=[])


def _postmortem() -> RollbackReport:
    return RollbackReport(rollout_id="r", reason="harm", ts_ms=0, restored_version="a",
                          candidate="b", windows_closed=3, metrics=[], drift_p_value=1.0,
                          srm_p_value=1.0, commands=[])


def test_a_decider_command_waits_for_the_window_that_caused_it() -> None:
    """A rollback read before its window is printed after that window, then the post-mortem."""
    order = CauseFirst(wait_s=1.5)
    rollback, report, window = _command(5, "rollback"), _postmortem(), _diagnosis(11, "rollback")
    assert order.add(rollback, 0.0) == []
    assert order.add(report, 0.1) == []
    assert order.add(window, 0.2) == [window, rollback, report]


def test_a_command_after_its_window_and_an_operator_command_print_at_once() -> None:
    """Nothing waits when the cause was already printed or the command has no window."""
    order = CauseFirst()
    window, step = _diagnosis(3, "step"), _command(2, "step")
    assert order.add(window, 0.0) == [window]
    assert order.add(step, 0.1) == [step]
    start = _command(1, "start", issued_by="operator")
    assert order.add(start, 0.2) == [start]
    manual = _command(6, "rollback", issued_by="operator")
    assert order.add(manual, 0.3) == [manual]


def test_a_command_whose_window_never_comes_is_printed_after_the_wait() -> None:
    """An unmatched command is held at most ``wait_s``, and flush releases everything."""
    order = CauseFirst(wait_s=1.0)
    promote = _command(5, "promote")
    assert order.add(promote, 0.0) == []
    assert order.due(0.5) == []
    assert order.due(1.0) == [promote]
    report = _postmortem()
    assert order.add(report, 2.0) == []
    assert order.due(2.1, flush=True) == [report]


def test_legend_names_every_metric_with_its_spec_name_and_fits_100_columns() -> None:
    """The legend ties conversion/latency/errors to label/latency_ms/error and their margins."""
    spec: RolloutSpec = demo_spec("demo-x")
    lines = legend_lines(spec)
    assert all(len(line) < 100 for line in lines), [len(line) for line in lines]
    text = "\n".join(lines)
    for words in ("conversion (label", "latency (latency_ms", "errors (error",
                  "margin 3pp", "margin 5ms", "margin 1pp"):
        assert words in text


def test_watch_command_reads_the_demo_runs_topics() -> None:
    """The printed watch command sets the topic prefix the demo run uses, and names its rollout."""
    from streammon.config.env import settings_from_env
    from streammon.sim.demo import watch_command

    command = watch_command("ab12cd")
    assignment, _prog, _verb, _sub, rollout_id, _flag = command.split()
    var, value = assignment.split("=", 1)
    settings = settings_from_env({var: value, "STREAMMON_DATA_DIR": "/nonexistent"})
    assert settings.topics.prefix == "demo-ab12cd."
    assert rollout_id == "demo-ab12cd"
