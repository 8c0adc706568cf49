# ruff: noqa: RUF001
"""Reproduce the operating-characteristics table of docs/statistics.md.

    python scripts/stats_table.py                 # print the table (1,000 replicates)
    python scripts/stats_table.py --write         # also rewrite it inside docs/statistics.md

Simulates every scenario of streammon.stats.scenarios with fixed seeds, runs streammon's
test and the naive repeated-CI rules on the same replicates, and times one decision with
bench/bench_decide.py.
"""

from __future__ import annotations

import argparse
import runpy
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from rich.console import Console  # noqa: E402
from rich.progress import track  # noqa: E402

from streammon.sim.operating_points import OperatingPoint, catalog, evaluate  # noqa: E402

START, END = "<!-- stats-table:start -->", "<!-- stats-table:end -->"


def _pct(x: float) -> str:
    return f"{100 * x:.1f}%"


def table(replicates: int, seed: int) -> str:
    lines = [
        "| scenario | kind | true effect | streammon rollbacks | median windows to rollback "
        "| naive pooled 95% CI | naive cell-wise 95% CI |",
        "|---|---|---|---|---|---|---|",
    ]
    scenarios = catalog()
    progress = track(scenarios, description=f"simulating {replicates} rollouts per scenario",
                     console=Console(stderr=True), transient=True)
    for index, scenario in enumerate(progress):
        p: OperatingPoint = evaluate(scenario, replicates, seed + 10_000 * index)
        effect = "harm" if scenario.harmful else "none"
        median = f"{p.median_detection:g}" if p.median_detection != float("inf") else "—"
        lines.append(f"| {p.name} | {p.kind} | {effect} | {_pct(p.rollback_rate)} | {median} "
                     f"| {_pct(p.naive_pooled_rate)} | {_pct(p.naive_cellwise_rate)} |")
    bench = runpy.run_path(str(ROOT / "bench" / "bench_decide.py"))
    points = [bench["measure"](w, 100) for w in (10, 60, 200)]
    cost = ", ".join(f"{p['us_per_window']:.0f} µs at {p['windows']} windows" for p in points)
    lines += ["", f"Replicates per scenario: {replicates}; 200 windows; α = 0.05; a look after "
              "every window.", f"Cost of one decision (5 metrics × 4 segments, full history): "
              f"{cost}."]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--replicates", type=int, default=1000)
    parser.add_argument("--seed", type=int, default=20240)
    parser.add_argument("--write", action="store_true", help="rewrite docs/statistics.md")
    args = parser.parse_args(argv)
    text = table(args.replicates, args.seed)
    print(text)
    if args.write:
        doc = ROOT / "docs" / "statistics.md"
        before, rest = doc.read_text(encoding="utf-8").split(START)
        _, after = rest.split(END)
        doc.write_text(f"{before}{START}\n{text}\n{END}{after}", encoding="utf-8")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
