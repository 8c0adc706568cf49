"""Render ``make bench``'s join results as the table in ``docs/join.md``.

``python bench/run_all.py --write-docs`` calls :func:`write_join_block` with the final
JSON, so the numbers in the docs are always one run's, copied by code, never by hand.
The block names the code it measured: the git tree ids of ``streammon/`` and ``bench/``,
which a commit that changes only docs keeps (so a docs commit carries the numbers of its
own code), and the machine's load while the run went.
"""

from __future__ import annotations

import os
import re
import subprocess
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
JOIN_DOC = ROOT / "docs" / "join.md"
START, END = "<!-- bench-join:start -->", "<!-- bench-join:end -->"


def code_identity() -> str:
    """Return 'streammon/ tree X, bench/ tree Y' (+ 'uncommitted changes' if dirty)."""
    def git(*args: str) -> str:
        out = subprocess.run(["git", *args], cwd=ROOT, capture_output=True, text=True,
                             check=False)
        return out.stdout.strip()

    trees = ", ".join(f"`{path}/` tree `{git('rev-parse', f'HEAD:{path}')[:12]}`"
                      for path in ("streammon", "bench"))
    dirty = git("status", "--porcelain", "--", "streammon", "bench")
    return trees + (" (**with uncommitted changes**)" if dirty else "")


def _n(value: Any) -> str:
    """Format a number with thousands separators (floats with one decimal)."""
    if isinstance(value, bool) or value is None:
        return str(value).lower()
    if isinstance(value, float) and not value.is_integer():
        return f"{value:,.1f}"
    return f"{int(value):,}"


def _runs(values: list[Any] | None) -> str:
    return " / ".join(_n(v) for v in values or [])


def join_table(final: dict[str, Any], load_avg: tuple[float, float]) -> str:
    """Return the markdown block (between the markers) for one run's final JSON."""
    join = final["benchmarks"]["bench_join"]
    steady = join.get("peak_rss_mb_steady_by_predictions", {})
    rows = [
        ("single events: join, events/s per worker",
         f"**{_n(join['single_event_join_events_per_s'])}**",
         _runs(join.get("single_event_join_runs_events_per_s"))),
        ("single events: ceiling, events/s", _n(join["single_event_ceiling_events_per_s"]),
         _runs(join.get("single_event_ceiling_runs_events_per_s"))),
        ("single events: ratio (target ≥ 0.15)", f"**{join['single_event_ratio']}**", ""),
        ("envelopes: join, events/s per worker", f"**{_n(join['join_events_per_s'])}**",
         _runs(join.get("join_runs_events_per_s"))),
        ("envelopes: ceiling, events/s", _n(join["ceiling_events_per_s"]),
         _runs(join.get("ceiling_runs_events_per_s"))),
        ("envelopes: ratio (target ≥ 0.3)", f"**{join['ratio']}**", ""),
        ("two workers in one group, events/s (speed-up over one)",
         f"{_n(join['two_workers_events_per_s'])} (**{join['two_workers_speedup']}×**)",  # noqa: RUF001
         _runs(join.get("two_workers_runs_events_per_s"))),
        ("two workers: events per worker CPU-second over one worker's; machine busy "
         "(share of both cores) with one / two workers",
         f"{join.get('two_workers_events_per_cpu_s_ratio')}; "
         f"{join.get('machine_busy_one_worker')} / {join.get('machine_busy_two_workers')}", ""),
        ("exact (every run, both workloads, one and two workers: every cell `==` truth)",
         f"**{_n(join['exact'])}**", ""),
        ("outcome → its window summary at 10k events/s, p50 / p99 (target p99 < 1000 ms)",
         f"{_n(join['p50_outcome_to_summary_ms'])} / "
         f"**{_n(join['p99_outcome_to_summary_ms'])} ms**",
         f"{_n(join['latency_outcomes_measured'])} outcomes"),
        (f"peak RSS, steady stream at {join['steady_events_per_s'] // 1000}k events/s, "
         + " / ".join(steady) + " predictions",
         " / ".join(_n(v) for v in steady.values()) + " MB", ""),
        ("peak RSS, preloaded backlog (envelopes / single events)",
         f"{_n(join['peak_rss_mb_backlog'])} / "
         f"{_n(join['single_event_peak_rss_mb_backlog'])} MB", ""),
    ]
    if "peak_rss_mb_1m_units_10k_segments_join_only" in join:
        rows.append((
            "peak RSS, 1M distinct units and 10k segments attempted, join only / with decider",
            f"{_n(join['peak_rss_mb_1m_units_10k_segments_join_only'])} / "
            f"{_n(join['peak_rss_mb_1m_units_10k_segments_with_decider'])} MB",
            "complete: " + _n(join.get("cardinality_complete_join_only", False)
                              and join.get("cardinality_complete_with_decider", False))))
    rows.append(("publisher SDK (validate, encode, group, send), events/s: envelopes / single",
                 f"{_n(join['publish_events_per_s'])} / "
                 f"{_n(join['single_event_publish_events_per_s'])}", ""))
    lines = [
        f"Code measured: {code_identity()}. One `make bench` run "
        f"(`python bench/run_all.py --write-docs`): rounds of one worker, the ceiling and "
        f"two workers run in turn; rates are medians over rounds, ratios the median of "
        f"each round's own ratio (runs in round order); load "
        f"average {load_avg[0]:.2f} at its start and {load_avg[1]:.2f} at its end "
        f"(2 cores). The whole JSON line is in `docs/bench-latest.json`.",
        "",
        "| | result | runs |",
        "|---|---|---|",
        *(f"| {label} | {value} | {runs} |" for label, value, runs in rows),
    ]
    return "\n".join(lines)


def write_join_block(final: dict[str, Any], load_avg: tuple[float, float],
                     doc: Path = JOIN_DOC) -> None:
    """Replace the text between the bench markers of ``doc`` with this run's table."""
    text = doc.read_text()
    pattern = re.compile(re.escape(START) + ".*?" + re.escape(END), re.S)
    if not pattern.search(text):
        raise SystemExit(f"{doc} has no {START} ... {END} block to write the results into")
    block = f"{START}\n{join_table(final, load_avg)}\n{END}"
    doc.write_text(pattern.sub(lambda _: block, text))


def load_average() -> float:
    """Return the 1-minute load average."""
    return os.getloadavg()[0]
