"""The demo's timeline: every command and every closed window, as a person reads them.

A background thread reads the control, diagnostics and rollbacks topics from the start
and prints one line per event, stamped with seconds since traffic began. The topics
arrive in no fixed order between them, so :class:`CauseFirst` puts each decider command
after the window that caused it and the post-mortem after its rollback.
:meth:`Timeline.summarise` prints the closing line: from the regression's start to the
rollback command, and to the moment the router switched.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field

from rich.console import Console

from streammon import events
from streammon.config.settings import Settings
from streammon.errors import EventError
from streammon.events import Command, Diagnosis, RollbackReport, RolloutSpec
from streammon.kafka.topic_reader import TopicReader
from streammon.ops.effect_text import describe_metric, format_estimate

_STYLE = {"rollback": "bold red", "promote": "bold green", "step": "cyan", "start": "cyan",
          "hold": "yellow", "resume": "cyan"}


@dataclass(frozen=True)
class OutcomeCheck:
    """Whether a demo run ended right, and the sentence that says why."""

    ok: bool
    message: str


def judge_outcome(*, regression_at_s: float | None, phase: str | None,
                  decision_at_s: float | None, evidence_end_s: float | None) -> OutcomeCheck:
    """Judge a demo run: a regressing candidate must be rolled back *because* it regressed.

    ``decision_at_s`` is when the terminal command was sent and ``evidence_end_s`` when
    the last window it judged ended (seconds since traffic began). A rollback sent
    before the regression, or decided on windows that all ended before it, is a false
    alarm that only happened to match the scenario: it is wrong.
    """
    if phase is None:
        return OutcomeCheck(False, "no decision in the demo's time")
    if regression_at_s is None:
        if phase == "promoted":
            return OutcomeCheck(True, "the healthy candidate was promoted")
        return OutcomeCheck(False, f"WRONG: the healthy candidate ended {phase}")
    if phase == "promoted":
        return OutcomeCheck(False, "WRONG: the regressing candidate was promoted")
    if phase != "rolled_back":
        return OutcomeCheck(False, f"WRONG: the regressing candidate ended {phase}")
    early = [t for t in (decision_at_s, evidence_end_s) if t is not None and t <= regression_at_s]
    if early or decision_at_s is None:
        return OutcomeCheck(False, f"WRONG: rolled back at +{decision_at_s or 0:.1f}s on "
                                   f"evidence from before the regression began at "
                                   f"+{regression_at_s:.1f}s (a false alarm)")
    return OutcomeCheck(True, "the regression was rolled back")


TimelineItem = Command | Diagnosis | RollbackReport

_DECIDED = ("step", "rollback", "promote", "hold")
"""Diagnosis actions that the decider follows with a command of the same action."""


@dataclass
class CauseFirst:
    """Order timeline items so that a cause is printed before its effect.

    A decider's command waits (at most ``wait_s``) for the window whose action it carries,
    and a post-mortem waits for its rollback command. Pure: time is passed in.
    """

    wait_s: float = 1.5
    _held: list[tuple[float, TimelineItem]] = field(default_factory=list)
    _unmatched: list[str] = field(default_factory=list)
    _rollback_shown: bool = False

    def add(self, item: TimelineItem, now_s: float) -> list[TimelineItem]:
        """Take one item read at ``now_s``; return what can be printed now, in order."""
        self._held.append((now_s, item))
        return self.due(now_s)

    def due(self, now_s: float, *, flush: bool = False) -> list[TimelineItem]:
        """Return the held items that are ready (or overdue, or all when ``flush``)."""
        out: list[TimelineItem] = []
        progress = True
        while progress:
            progress = False
            for entry in list(self._held):
                held_at, item = entry
                if flush or now_s - held_at >= self.wait_s or self._ready(item):
                    self._held.remove(entry)
                    self._release(item)
                    out.append(item)
                    progress = True
        return out

    def _ready(self, item: TimelineItem) -> bool:
        if isinstance(item, RollbackReport):
            return self._rollback_shown
        if isinstance(item, Command):
            return (item.issued_by != "decider" or item.action not in _DECIDED
                    or item.action in self._unmatched)
        return True

    def _release(self, item: TimelineItem) -> None:
        if isinstance(item, Diagnosis) and item.action in _DECIDED:
            self._unmatched.append(item.action)
        elif isinstance(item, Command):
            if item.action in self._unmatched:
                self._unmatched.remove(item.action)
            self._rollback_shown |= item.action == "rollback"


class Timeline:
    """Print the rollout's commands and assessments as they happen."""

    def __init__(self, settings: Settings, console: Console, spec: RolloutSpec) -> None:
        self.settings, self.console, self.spec = settings, console, spec
        self.t0_monotonic: float | None = None
        self.t0_wall: float = time.time()
        self.regression_at_s: float | None = None
        self.decision: tuple[str, float] | None = None
        self.evidence_end_s: float | None = None
        self.traffic_seen = False
        self.postmortem_shown = False
        self._order = CauseFirst()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="timeline", daemon=True)

    def __enter__(self) -> Timeline:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(timeout=5)

    def set_origin(self, t0_monotonic: float, regression_at_s: float | None) -> None:
        """Set time zero (traffic start) and when the regression begins, if it does."""
        self.t0_monotonic = t0_monotonic
        self.t0_wall = time.time() - (time.monotonic() - t0_monotonic)
        self.regression_at_s = regression_at_s

    def _at(self, ts_ms: int) -> float:
        return ts_ms / 1000 - self.t0_wall

    def _run(self) -> None:
        topics = self.settings.topics
        with TopicReader(self.settings, [topics.control, topics.diagnostics,
                                         topics.rollbacks]) as reader:
            while not self._stop.is_set():
                for topic, _key, value in reader.poll(0.1, 100):
                    item = self._decode(topic, value)
                    for ready in self._order.add(item, time.monotonic()) if item else ():
                        self._show(ready)
                for ready in self._order.due(time.monotonic()):
                    self._show(ready)
        for ready in self._order.due(time.monotonic(), flush=True):
            self._show(ready)

    def _decode(self, topic: str, value: bytes) -> TimelineItem | None:
        try:
            if topic == self.settings.topics.control:
                return events.decode(Command, value)
            if topic == self.settings.topics.rollbacks:
                return events.decode(RollbackReport, value)
            return events.decode(Diagnosis, value)
        except EventError as exc:
            self.console.print(f"[red]unreadable event on {topic}: {exc}[/red]")
            return None

    def _show(self, item: TimelineItem) -> None:
        if isinstance(item, Command):
            self._show_command(item)
        elif isinstance(item, RollbackReport):
            self._show_postmortem(item)
        else:
            self._show_diagnosis(item)

    def _show_command(self, cmd: Command) -> None:
        at = self._at(cmd.ts_ms)
        style = _STYLE.get(cmd.action, "white")
        self.console.print(
            f"[{style}]{at:+7.1f}s  {cmd.action.upper():8s} seq {cmd.seq}: canary "
            f"{cmd.candidate} at {cmd.fraction:.0%}  ({cmd.issued_by}: {cmd.reason})[/{style}]",
            soft_wrap=True)
        if cmd.action in ("rollback", "promote") and self.decision is None:
            self.decision = (cmd.action, at)

    def _show_diagnosis(self, d: Diagnosis) -> None:
        if d.action in ("rollback", "promote") and self.evidence_end_s is None:
            self.evidence_end_s = self._at(d.window_start_ms + self.spec.window_ms)
        if not self.traffic_seen and not any(m.n_baseline + m.n_canary for m in d.metrics):
            self.console.print(f"[dim]{self._at(d.ts_ms):+7.1f}s  window {d.windows_closed:3d}"
                               "  closed before any traffic: nothing to judge[/dim]")
            return
        self.traffic_seen = True
        parts = [format_estimate(m.name, m.effect, m.lower, m.upper, changed=m.changed)
                 for m in d.metrics]
        self.console.print(f"[dim]{self._at(d.ts_ms):+7.1f}s  window {d.windows_closed:3d}  "
                           f"canary {d.fraction:4.0%}[/dim]  " + "  ".join(parts) +
                           f"  [dim]-> {d.action}[/dim]", soft_wrap=True)

    def _show_postmortem(self, report: RollbackReport) -> None:
        from streammon.decide.postmortem import render_text

        text = render_text(report).split("\n")
        self.console.print("[red]  post-mortem (what `streammon rollout diagnose "
                           f"{report.rollout_id}` prints while the broker runs):[/red]")
        for line in text[:-len(report.commands) - 1]:  # the commands are printed above
            self.console.print(f"    {line}", style="red", highlight=False, markup=False,
                               soft_wrap=True)
        self.postmortem_shown = True

    def print_legend(self) -> None:
        """Explain the columns once, before the first line."""
        for line in legend_lines(self.spec):
            self.console.print(line, style="dim", highlight=False, markup=False)

    def summarise(self, phase: str | None, switched_at_s: float | None, *, expected: str) -> int:
        """Print the closing lines; return 0 if the rollout ended as ``expected``."""
        deadline = time.monotonic() + 10.0
        while phase is not None and self.decision is None and time.monotonic() < deadline:
            time.sleep(0.1)  # the timeline thread has yet to read the terminal command
        deadline = time.monotonic() + 3.0
        while phase == "rolled_back" and not self.postmortem_shown and \
                time.monotonic() < deadline:
            time.sleep(0.1)  # the post-mortem belongs above the closing rule
        self.console.rule()
        check = judge_outcome(regression_at_s=self.regression_at_s, phase=phase,
                              decision_at_s=self.decision[1] if self.decision else None,
                              evidence_end_s=self.evidence_end_s)
        if phase is None:
            self.console.print(f"[bold red]{check.message}: expected {expected}[/bold red]")
            return 1
        reg = self.regression_at_s
        decision_at = self.decision[1] if self.decision else float("nan")
        if phase == "rolled_back" and reg is not None and switched_at_s is not None:
            self.console.print(
                f"[bold]regression began at +{reg:.1f}s; rollback command at "
                f"+{decision_at:.1f}s ({decision_at - reg:.1f}s later); router switched at "
                f"+{switched_at_s:.1f}s ({switched_at_s - reg:.1f}s after the regression)[/bold]")
        else:
            self.console.print(
                f"[bold]{self.decision[0] if self.decision else phase} command at "
                f"+{decision_at:.1f}s; router switched at "
                f"+{(switched_at_s or 0):.1f}s[/bold]")
        self.console.print(f"[bold green]right outcome: {check.message}[/bold green]" if check.ok
                           else f"[bold red]wrong outcome: {check.message}[/bold red]")
        return 0 if check.ok else 1




def legend_lines(spec: RolloutSpec) -> list[str]:
    """Return the legend printed before the first window line (each line under 100 columns)."""
    lines = ["How to read a window line: seconds since traffic began, the decision window that "
             "just closed,",
             "the canary's share of traffic, then per metric the canary-minus-baseline effect "
             "with its",
             f"anytime-valid confidence bounds (alpha {spec.alpha:g} over the whole rollout; pp = "
             "percentage points),",
             "then the decider's action. \"(effect changed)\": the latest effect left the earlier "
             "bounds.",
             "Any significant harm rolls back. Promotion needs every metric shown no worse than "
             "its margin",
             "by a one-sided test on the final stage alone, so the bounds here may still reach "
             "past it.",
             "Metrics:"]
    lines += [f"  {describe_metric(m.name, m.bad_direction, m.margin)}" for m in spec.metrics]
    return lines
