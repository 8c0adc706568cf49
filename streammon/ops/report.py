"""``streammon report ID``: one rollout's story as a self-contained HTML page and PNGs.

Three layers, the outer ones thin:

* :class:`~streammon.ops.rollout_feed.RolloutEvents` holds what the topics say about one
  rollout; :func:`streammon.ops.rollout_feed.read_rollout` fills it from the cohorts,
  control and diagnostics topics (any Kafka).
* :func:`streammon.ops.report_analysis.analyse` turns it into a
  :class:`~streammon.ops.report_analysis.RolloutAnalysis` with pure computations.
* :func:`build_report` renders charts and the page (:mod:`streammon.ops.report_charts`);
  :func:`write_report` writes ``report.html`` and one PNG per chart.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from streammon.config.settings import Settings
from streammon.errors import ConfigError
from streammon.ops.report_analysis import RolloutAnalysis, analyse

if TYPE_CHECKING:
    from streammon.ops.rollout_feed import RolloutEvents


@dataclass(frozen=True)
class Report:
    """A rendered report: the HTML page (charts inlined) and each chart's PNG bytes."""

    html: str
    charts: dict[str, bytes]
    analysis: RolloutAnalysis


def build_report(data: RolloutEvents) -> Report:
    """Analyse ``data`` and render the page and its charts (needs matplotlib)."""
    from streammon.ops import report_charts

    analysis = analyse(data.rollout_id, list(data.summaries.values()), data.commands,
                       data.diagnoses)
    charts = report_charts.render_charts(analysis)
    return Report(html=report_charts.render_page(analysis, charts), charts=charts,
                  analysis=analysis)


def write_report(report: Report, out_dir: str | Path) -> Path:
    """Write ``report.html`` and ``<chart>.png`` files into ``out_dir``; return the page."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    for name, png in report.charts.items():
        (out / f"{name}.png").write_bytes(png)
    page = out / "report.html"
    page.write_text(report.html, encoding="utf-8")
    return page


def generate_report(settings: Settings, rollout_id: str, out_dir: str | Path, *,
                    timeout_s: float = 30.0) -> Path:
    """Read a rollout from the topics, render it and write it; return the HTML path."""
    from streammon.ops.rollout_feed import read_rollout

    data = read_rollout(settings, rollout_id, timeout_s=timeout_s)
    if not data.commands_by_seq:
        raise ConfigError(f"no commands for rollout {rollout_id!r} on "
                          f"{settings.topics.control}: check the id and the topic prefix")
    return write_report(build_report(data), out_dir)
