"""The report's charts (PNG bytes, matplotlib) and its self-contained HTML page.

Figures are built with ``matplotlib.figure.Figure`` directly (no pyplot, no global
backend), so rendering is thread-safe and leaves no state behind. Infinite or huge
bounds (the first windows of a confidence sequence) are clipped to the plotted range.
"""

from __future__ import annotations

import base64
import html
import io
import math
from typing import Any

from streammon.events import MetricEstimate
from streammon.ops.effect_text import (
    CHANGED,
    display_units,
    format_bounds,
    format_effect,
    format_margin,
    is_changing,
    metric_title,
    metric_verdict,
)
from streammon.ops.report_analysis import MetricSeries, RolloutAnalysis, SegmentEffect

_ACTION_COLOUR = {"start": "tab:blue", "step": "tab:cyan", "promote": "tab:green",
                  "rollback": "tab:red", "hold": "tab:orange", "resume": "tab:blue"}
_CSS = """body{font-family:system-ui,sans-serif;max-width:1100px;margin:2em auto;color:#222;
padding:0 1em}.scroll{overflow-x:auto}
table{border-collapse:collapse}td,th{border:1px solid #ccc;padding:4px 8px}
.outcome{font-size:1.2em;padding:.6em 1em;border-left:6px solid #888;background:#fafafa}
.rolled_back{border-color:#c00}.promoted{border-color:#080}img{max-width:100%}"""


def render_charts(a: RolloutAnalysis) -> dict[str, bytes]:
    """Return every chart as PNG bytes, keyed by a file-name stem."""
    charts = {f"effect_{m.name}": _png(_effect_figure(a, m)) for m in a.metrics}
    charts["ramp"] = _png(_ramp_figure(a))
    for metric in dict.fromkeys(s.metric for s in a.segments):
        rows = [s for s in a.segments if s.metric == metric]
        charts[f"segments_{metric}"] = _png(_segment_figure(metric, rows))
    if a.drift.windows:
        charts["drift"] = _png(_drift_figure(a))
    return charts


def _figure(height_in: float = 3.2) -> tuple[Any, Any]:
    from matplotlib.figure import Figure

    fig = Figure(figsize=(9, height_in), dpi=100, layout="constrained")
    return fig, fig.add_subplot()


def _png(fig: Any) -> bytes:
    buf = io.BytesIO()
    fig.savefig(buf, format="png")
    return buf.getvalue()


def _mark_commands(ax: Any, a: RolloutAnalysis, *, label: bool) -> None:
    """Draw a vertical line per command; a rollback is a thick red labelled line."""
    for c in a.commands:
        at = (c.ts_ms - a.t0_ms) / 1000
        thick = c.action in ("rollback", "promote")
        ax.axvline(at, color=_ACTION_COLOUR.get(c.action, "grey"), lw=2.5 if thick else 0.8,
                   ls="-" if thick else ":")
        if label and c.action != "start":
            ax.annotate(c.action.upper(), (at, 1.0), xycoords=("data", "axes fraction"),
                        xytext=(-3, -3), textcoords="offset points", rotation=90, va="top",
                        ha="right", fontsize=8, color=_ACTION_COLOUR.get(c.action, "grey"),
                        bbox={"fc": "white", "ec": "none", "alpha": 0.8, "pad": 1})


def _clip_range(m: MetricSeries, scale: float = 1.0) -> tuple[float, float]:
    """Return y-limits (display units) that show the estimates and the later bounds."""
    finite = [x * scale for x in m.effect + m.lower[len(m.lower) // 3:]
              + m.upper[len(m.upper) // 3:] if math.isfinite(x) and abs(x) < 1e299]
    finite += [0.0, m.margin * scale, -m.margin * scale]
    lo, hi = min(finite), max(finite)
    pad = 0.1 * (hi - lo or 1.0)
    return lo - pad, hi + pad


def _effect_figure(a: RolloutAnalysis, m: MetricSeries) -> Any:
    """Draw the effect after every window with its confidence sequence, in display units."""
    fig, ax = _figure(3.6)
    scale, unit = display_units(m.name)
    lo, hi = _clip_range(m, scale)
    lower = [min(max(x * scale, lo), hi) for x in m.lower]
    upper = [min(max(x * scale, lo), hi) for x in m.upper]
    effect = [x * scale for x in m.effect]
    ax.fill_between(m.t_s, lower, upper, step="pre", alpha=0.25, color="tab:blue",
                    label="confidence sequence (each window: up to its end)")
    ax.plot(m.t_s, effect, marker="o", ms=3, color="tab:blue", label="effect (canary - baseline)")
    ax.axhline(0.0, color="black", lw=0.8)
    harm = -m.margin if m.bad_direction == "decrease" else m.margin
    if m.margin:
        ax.axhline(harm * scale, color="grey", ls="--", lw=0.8,
                   label=f"non-inferiority margin {'-' if harm < 0 else '+'}"
                         f"{format_margin(m.name, m.margin)}")
    if "Rollback" in m.verdicts:
        i = m.verdicts.index("Rollback")
        start = m.t_s[i - 1] if i else m.t_s[i] - a.window_ms / 1000
        ax.fill_between([start, m.t_s[i]], lower[i], upper[i], color="red", alpha=0.5,
                        label="harm shown (whole band on the bad side)")
        ax.scatter([m.t_s[i]], [effect[i]], s=80, color="red", zorder=5)
    _mark_commands(ax, a, label=True)
    ax.set_ylim(lo, hi)
    worse = "higher" if m.bad_direction == "increase" else "lower"
    ax.set(title=f"{metric_title(m.name)}: canary - baseline ({worse} is worse)",
           xlabel="seconds since the rollout started",
           ylabel=f"effect ({_unit_words(unit)})")
    fig.legend(loc="outside lower center", ncols=2, fontsize=8, frameon=False)
    return fig


def _unit_words(unit: str) -> str:
    return {"pp": "percentage points", "ms": "ms", "": "metric units"}.get(unit, unit)


def _ramp_figure(a: RolloutAnalysis) -> Any:
    fig, ax = _figure()
    times = [(c.ts_ms - a.t0_ms) / 1000 for c in a.commands]
    fractions = [c.fraction for c in a.commands]
    end = max(times + a.window_t_s + [0.0]) + a.window_ms / 1000
    ax.step([*times, end], [*fractions, fractions[-1]], where="post", color="black",
            label="intended canary fraction")
    ax.plot(a.window_t_s, a.observed_fraction, "o", ms=3, color="tab:purple",
            label="observed canary share per window")
    _mark_commands(ax, a, label=True)
    ax.set(title="traffic ramp and commands", xlabel="seconds since the rollout started",
           ylabel="canary share of traffic", ylim=(-0.02, 1.05))
    ax.legend(loc="upper left", fontsize=8)
    return fig


def _segment_figure(metric: str, rows: list[SegmentEffect]) -> Any:
    """Each segment's effect and bounds in display units; crossed bounds are said in words."""
    fig, ax = _figure(1.4 + 0.6 * len(rows))
    scale, unit = display_units(metric)
    for i, s in enumerate(rows):
        colour = "tab:red" if s.harm else "tab:blue"
        if s.lower <= s.upper:
            lo = s.lower if abs(s.lower) < 1e299 else s.effect
            hi = s.upper if abs(s.upper) < 1e299 else s.effect
            ax.plot([lo * scale, hi * scale], [i, i], color=colour, lw=3)
        if is_changing(s.effect, s.lower, s.upper):
            ax.annotate(CHANGED, (s.effect * scale, i), xytext=(0, 6),
                        textcoords="offset points", ha="center", fontsize=8, color=colour)
        ax.plot([s.effect * scale], [i], "o", color="black")
    ax.axvline(0.0, color="black", lw=0.8)
    ax.set_yticks(range(len(rows)),
                  [f"{s.segment}\n({s.n_baseline} base / {s.n_canary} canary)" for s in rows])
    ax.set(title=f"{metric_title(metric)}: effect per segment (red: harm shown)",
           xlabel=f"canary - baseline ({_unit_words(unit)})", ylim=(-0.7, len(rows) - 0.3))
    return fig


def _drift_figure(a: RolloutAnalysis) -> Any:
    fig, ax = _figure()
    for offset, (arm, counts) in zip((-0.2, 0.2), a.score_hist.items(), strict=True):
        total = sum(counts) or 1
        bins = len(counts)
        ax.bar([(i + 0.5) / bins + offset / bins for i in range(bins)],
               [c / total for c in counts], width=0.4 / bins, label=f"{arm} (n={total})")
    ax.set(title=f"model scores per arm (drift p = {a.drift.p_value:.3g})",
           xlabel="score", ylabel="share of predictions")
    ax.legend(fontsize=8)
    return fig


def render_page(a: RolloutAnalysis, charts: dict[str, bytes]) -> str:
    """Return the self-contained HTML page: words first, then every chart inlined."""
    e = html.escape
    parts = [f"<!doctype html><html><head><meta charset='utf-8'><meta name='viewport' "
             f"content='width=device-width, initial-scale=1'><title>rollout "
             f"{e(a.rollout_id)}</title><style>{_CSS}</style></head><body>",
             f"<h1>Rollout {e(a.rollout_id)}: {e(a.baseline)} &rarr; {e(a.candidate)}</h1>",
             f"<p class='outcome {e(a.phase)}'>{e(headline(a))}</p>",
             *(f"<p>{e(line)}</p>" for line in explanation(a)),
             "<h2>Effects over time (confidence sequences)</h2>"]
    parts += [_img(n, p) for n, p in charts.items() if n.startswith("effect_")]
    parts += ["<h2>Traffic ramp and commands</h2>", _img("ramp", charts["ramp"]),
              _command_table(a)]
    parts += ["<h2>Per-segment effects</h2>"]
    parts += [_img(n, p) for n, p in charts.items() if n.startswith("segments_")]
    parts += ["<h2>Prediction drift</h2>"]
    parts += [_img("drift", charts["drift"])] if "drift" in charts else ["<p>No scores.</p>"]
    return "\n".join([*parts, "</body></html>"])


def _img(name: str, png: bytes) -> str:
    data = base64.b64encode(png).decode()
    return f'<p><img alt="{html.escape(name)}" src="data:image/png;base64,{data}"></p>'


def _command_table(a: RolloutAnalysis) -> str:
    rows = "".join(
        f"<tr><td>{c.seq}</td><td>+{(c.ts_ms - a.t0_ms) / 1000:.1f}s</td>"
        f"<td><b>{html.escape(c.action.upper())}</b></td><td>{c.fraction:.0%}</td>"
        f"<td>{html.escape(c.issued_by)}</td><td>{html.escape(c.reason)}</td></tr>"
        for c in a.commands)
    return ("<div class='scroll'><table><tr><th>seq</th><th>at</th><th>action</th><th>canary"
            f"</th><th>by</th><th>reason</th></tr>{rows}</table></div>")


def headline(a: RolloutAnalysis) -> str:
    """Return the one-line outcome: what happened, when, by whom and why."""
    final = next((c for c in reversed(a.commands) if c.action in ("rollback", "promote")), None)
    if final is None:
        last = a.commands[-1]
        return (f"{a.phase.upper()}: {a.candidate} gets {last.fraction:.0%} of traffic "
                f"(stage {last.stage}, seq {last.seq}).")
    at = (final.ts_ms - a.t0_ms) / 1000
    what = (f"ROLLED BACK at +{at:.1f}s: all traffic back to the pinned {a.baseline}"
            if final.action == "rollback" else f"PROMOTED at +{at:.1f}s: all traffic to "
            f"{a.candidate}")
    return f"{what} (seq {final.seq}, by {final.issued_by}). Reason: {final.reason or '-'}."


def explanation(a: RolloutAnalysis) -> list[str]:
    """Return the paragraphs that explain the outcome from the decisive window's numbers."""
    lines = ["Commands, in order: " + " -> ".join(f"{c.action} {c.fraction:.0%}"
                                                  for c in a.commands) + "."]
    d = a.final_diagnosis
    if d is None:
        return [*lines, "No window has been assessed yet."]
    end_s = (d.window_start_ms + a.window_ms - a.t0_ms) / 1000
    judged = f", judged at +{(d.ts_ms - a.t0_ms) / 1000:.1f}s" if d.ts_ms else ""
    lines.append(f"Decisive window {d.windows_closed} (ending +{end_s:.1f}s{judged}), canary at "
                 f"{d.fraction:.0%}: {d.action} ({d.message or d.verdict}).")
    directions: dict[str, str] = {m.name: m.bad_direction for m in a.spec.metrics}
    for m in d.metrics:
        lines.append(_metric_words(a, m, directions.get(m.name, "increase")))
    if any(m.verdict == "Promote" for m in d.metrics):
        lines.append("\"No worse\" is a one-sided test against the metric's margin on the "
                     "current stage's windows alone; the bounds above are two-sided over the "
                     "whole rollout, so they can reach past the margin of a metric shown no "
                     "worse.")
    lines += [_srm_words(a), _drift_words(a)]
    if a.phase == "rolled_back":
        lines.append(f"Rollback is a switch, not a delete: {a.candidate} is kept, and routers "
                     f"send everything to the pinned {a.baseline}.")
    return lines


def _metric_words(a: RolloutAnalysis, m: MetricEstimate, bad_direction: str) -> str:
    """One metric's sentence, in the same units and words as the status view and timeline."""
    worse = "higher" if bad_direction == "increase" else "lower"
    crossed = m.lower > m.upper
    bounds = "" if crossed else f"confidence bounds {format_bounds(m.name, m.lower, m.upper)}"
    if m.verdict == "Rollback":
        why = (f"{bounds + ', on the harmful side: ' if bounds else ''}harm shown ({worse} "
               f"is worse) at error rate {a.metric_alpha:.3g}, valid although the decider "
               "looked after every window")
    else:
        why = f"{bounds or 'no single interval'}: {metric_verdict(m.verdict)}"
    if crossed:
        why += "; its running bounds crossed: the effect changed during the rollout"
    elif is_changing(m.effect, m.lower, m.upper, changed=m.changed):
        why += ("; the effect changed during the rollout: the latest estimate has left the "
                "bounds of the earlier windows")
    return (f"{metric_title(m.name)}: canary - baseline = {format_effect(m.name, m.effect)} "
            f"({m.rel_effect:+.1%} relative; n = {m.n_baseline} baseline, {m.n_canary} "
            f"canary); {why}.")


def _srm_words(a: RolloutAnalysis) -> str:
    s = a.srm
    if not s.windows:
        return "Sample ratio: no complete window at a steady split yet."
    verdict = "MISMATCH - the router does not split as intended" if s.mismatch else "consistent"
    return (f"Sample ratio: the canary got {s.observed:.1%} of requests where {s.intended:.1%} "
            f"was intended ({s.windows} steady windows); anytime-valid p = {s.p_value:.3g} "
            f"(alarm at {s.alpha:g}): {verdict}.")


def _drift_words(a: RolloutAnalysis) -> str:
    if not a.drift.windows:
        return "Prediction drift: no model scores were published for both arms."
    said = "the canary scores differently" if a.drift.shown else "no drift shown"
    return (f"Prediction drift (sequential chi-square over score histograms): p = "
            f"{a.drift.p_value:.3g} at alpha {a.drift.alpha:g}: {said}. Drift informs; it "
            "does not by itself roll back.")
