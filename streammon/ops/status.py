"""``streammon rollout status ID [--watch]``: where a rollout stands, in a terminal.

:func:`render_status` is pure: it takes the route state and its log (from Redis), the
latest :class:`~streammon.events.Diagnosis`, the rollout's spec and the sample-ratio
check, and returns a rich renderable. :func:`run_status` gathers those inputs (Redis
route state ``streammon:rollout:{id}`` and its log ``streammon:rollout-log:{id}``; the
cohorts, control and
diagnostics topics through :class:`RolloutFeed`) and prints once, or redraws until
interrupted. :class:`RolloutFeed` also feeds ``streammon report``.
"""

from __future__ import annotations

import contextlib
import time
from typing import Any

import msgspec
from rich import box
from rich.console import Console, Group, RenderableType
from rich.table import Table
from rich.text import Text

from streammon.config.settings import Settings
from streammon.control.commands import FINAL_PHASES, RouteState, log_key, route_key
from streammon.errors import RedisIOError, StreamMonError
from streammon.events import Diagnosis, RolloutSpec
from streammon.ops.effect_text import (
    CHANGED,
    format_bounds,
    format_count,
    format_effect,
    is_changing,
    metric_label,
)
from streammon.ops.rollout_feed import RolloutEvents, RolloutFeed, read_rollout
from streammon.ops.rollout_grid import SrmCheck, rollout_grid, srm_check

__all__ = ["RolloutEvents", "RolloutFeed", "read_rollout", "render_status", "run_status"]

LOG_ENTRIES = 8
_VERDICT_STYLE = {"Rollback": "bold red", "Promote": "green", "Halt": "yellow",
                  "Error": "red", "Running": "cyan", "Pending": "dim"}
_PHASE_STYLE = {"rolled_back": "bold red", "promoted": "bold green", "held": "yellow",
                "running": "cyan"}


def render_status(*, rollout_id: str, route: RouteState | None, log: list[RouteState],
                  diagnosis: Diagnosis | None, spec: RolloutSpec | None,
                  srm: SrmCheck | None, now_ms: int) -> RenderableType:
    """Return the status view of one rollout; pure, so it is tested without I/O."""
    return Group(_header(rollout_id, route, spec, now_ms), _metrics_table(diagnosis),
                 Text(_srm_line(srm)), _log_table(log, now_ms))


def _header(rollout_id: str, route: RouteState | None, spec: RolloutSpec | None,
            now_ms: int) -> RenderableType:
    if route is None:
        return Text(f"rollout {rollout_id}: no route state in Redis yet (has the actuator "
                    "applied the start command?)", style="yellow")
    text = Text(f"rollout {rollout_id}  {route.baseline} -> {route.candidate}\n", style="bold")
    text.append(f"{route.phase.upper()}", style=_PHASE_STYLE.get(route.phase, "white"))
    text.append(f"  stage {route.stage}  canary {route.candidate_weight:.1%} of traffic\n")
    text.append(f"last change: seq {route.seq}, {route.action} by {route.issued_by or '?'}, "
                f"{_ago(route.ts_ms, now_ms)}\n")
    text.append(f"next step: {next_step_text(route, spec, now_ms)}")
    return text


def next_step_text(route: RouteState, spec: RolloutSpec | None, now_ms: int) -> str:
    """Say when the decider can step next, or why it will not."""
    if route.phase in FINAL_PHASES:
        return f"none - the rollout is {route.phase.replace('_', ' ')}"
    if route.phase == "held":
        return "none while held (`streammon rollout resume ID`)"
    if spec is None:
        return "unknown (no start command with a spec on the control topic)"
    if route.fraction >= spec.f_max:
        return (f"at the maximum {spec.f_max:.0%}: promotes once every metric excludes harm "
                "beyond its margin")
    due_ms = route.ts_ms + spec.step_windows * spec.window_ms + spec.grace_ms
    wait = (f"in ~{(due_ms - now_ms) / 1000:.0f} s" if due_ms > now_ms
            else "due at the next closed window")
    return (f"{wait} (needs {spec.step_windows} windows and {spec.min_samples_per_stage} "
            f"canary requests in the stage, and no harm)")


def _metrics_table(d: Diagnosis | None) -> RenderableType:
    """Each metric's effect, bounds and sample sizes; fits 80 columns without cutting."""
    if d is None:
        return Text("no window assessed yet", style="dim")
    table = Table(title=f"window {d.windows_closed}: {d.verdict} -> {d.action}"
                        + (f" ({d.message})" if d.message else ""), title_justify="left",
                  box=box.SIMPLE_HEAD, pad_edge=False)
    for col in ("metric", "effect", "rel.", "bounds", "n base", "n canary", "verdict"):
        table.add_column(col, no_wrap=True, justify="left" if col == "metric" else "right")
    for m in d.metrics:
        changing = is_changing(m.effect, m.lower, m.upper, changed=m.changed)
        bounds = CHANGED if changing else format_bounds(m.name, m.lower, m.upper)
        table.add_row(metric_label(m.name), format_effect(m.name, m.effect),
                      f"{m.rel_effect:+.1%}", bounds,
                      format_count(m.n_baseline), format_count(m.n_canary),
                      Text(m.verdict, style=_VERDICT_STYLE.get(m.verdict, "")))
    return table


def _srm_line(srm: SrmCheck | None) -> str:
    if srm is None or not srm.windows:
        return "sample ratio: no steady window yet"
    state = "MISMATCH (router broken?)" if srm.mismatch else "ok"
    return (f"sample ratio: canary {srm.observed:.1%} vs intended {srm.intended:.1%} over "
            f"{srm.windows} windows, p = {srm.p_value:.3g} (alarm at {srm.alpha:g}): {state}")


def _log_table(log: list[RouteState], now_ms: int) -> RenderableType:
    table = Table(title="last commands", title_justify="left", box=box.SIMPLE_HEAD,
                  pad_edge=False)
    for col in ("seq", "when", "action", "canary", "by", "reason"):
        table.add_column(col, no_wrap=col != "reason", overflow="fold")
    for s in log[-LOG_ENTRIES:]:
        style = "bold red" if s.action == "rollback" else ""
        table.add_row(str(s.seq), _ago(s.ts_ms, now_ms), Text(s.action.upper(), style=style),
                      f"{s.fraction:.0%}", s.issued_by, s.reason)
    return table


def _ago(ts_ms: int, now_ms: int) -> str:
    return f"{max(now_ms - ts_ms, 0) / 1000:.0f} s ago" if ts_ms else "-"


def read_route(client: Any, rollout_id: str) -> tuple[RouteState | None, list[RouteState]]:
    """Return the applied route state and the last log entries from Redis."""
    import redis

    key = route_key(rollout_id)
    try:
        raw, entries = client.get(key), client.lrange(log_key(rollout_id), -LOG_ENTRIES, -1)
    except redis.RedisError as exc:
        raise RedisIOError(f"cannot read {key}: {exc}") from exc
    decode = msgspec.json.Decoder(RouteState).decode
    return (decode(raw) if raw else None), [decode(e) for e in entries]


def view_of(feed: RolloutFeed, client: Any, now_ms: int) -> RenderableType:
    """Build the status view from what the feed has read and what Redis holds now."""
    data = feed.data
    route, log = read_route(client, data.rollout_id)
    start, diagnoses, srm = data.commands_by_seq.get(1), data.diagnoses, None
    with contextlib.suppress(StreamMonError):  # no start command yet: no split to check
        rollout = rollout_grid(data.rollout_id, list(data.summaries.values()), data.commands,
                               diagnoses)
        srm = srm_check(rollout.grid.assignment, rollout.policy.srm_alpha)
    return render_status(rollout_id=data.rollout_id, route=route, log=log,
                         diagnosis=diagnoses[-1] if diagnoses else None,
                         spec=start.spec if start else None, srm=srm, now_ms=now_ms)


def run_status(settings: Settings, rollout_id: str, *, watch: bool = False,
               refresh_s: float = 1.0, console: Console | None = None,
               max_refreshes: int | None = None) -> int:
    """Print the status once (or redraw every ``refresh_s`` until Ctrl-C); return 0."""
    from rich.live import Live

    from streammon.control.store import connect

    console = console or Console()
    client = connect(settings)
    feed = RolloutFeed(settings, rollout_id)
    try:
        feed.read_to_end(timeout_s=15.0)
        if not watch:
            console.print(view_of(feed, client, int(time.time() * 1000)))
            return 0
        with Live(console=console, auto_refresh=False) as live:
            count = 0
            while max_refreshes is None or count < max_refreshes:
                feed.poll(refresh_s)
                live.update(view_of(feed, client, int(time.time() * 1000)), refresh=True)
                count += 1
    except KeyboardInterrupt:
        pass
    finally:
        feed.close()
        client.close()
    return 0
