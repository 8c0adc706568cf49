# ruff: noqa: RUF001
"""Reproduce the operating-characteristics table of docs/statistics.md.

    python scripts/stats_table.py                 # print the table (1,000 replicates)
    python scripts/stats_table.py --write         # also rewrite it inside docs/statistics.md
    python scripts/stats_table.py --section events --event-replicates 300 --write

The event-level section replays seeded prediction/outcome events through
streammon.backtest.replay_events (the worker's join and decider), one scenario per
process (``--jobs``).

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
EVENTS_START, EVENTS_END = "<!-- stats-table-events:start -->", "<!-- stats-table-events:end -->"
PROD_START, PROD_END = ("<!-- stats-table-production:start -->",
                        "<!-- stats-table-production:end -->")


def _pct(x: float) -> str:
    return f"{100 * x:.1f}%"


def table(replicates: int, seed: int) -> str:
    lines = [
        "| scenario | kind | true effect | streammon rollbacks | median windows to rollback "
        "| fixed-horizon windows (80% power) | ratio | naive pooled 95% CI "
        "| naive cell-wise 95% CI |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    scenarios = catalog()
    progress = track(scenarios, description=f"simulating {replicates} rollouts per scenario",
                     console=Console(stderr=True), transient=True)
    for index, scenario in enumerate(progress):
        p: OperatingPoint = evaluate(scenario, replicates, seed + 10_000 * index)
        effect = "harm" if scenario.harmful else "none"
        median = f"{p.median_detection:g}" if p.median_detection != float("inf") else "—"
        fixed, ratio = "—", "—"
        if scenario.harmful:
            fixed = f"{p.fixed_horizon:.1f}"
            ratio = f"{p.median_detection / p.fixed_horizon:.2f}×"
        lines.append(f"| {p.name} | {p.kind} | {effect} | {_pct(p.rollback_rate)} | {median} "
                     f"| {fixed} | {ratio} | {_pct(p.naive_pooled_rate)} "
                     f"| {_pct(p.naive_cellwise_rate)} |")
    bench = runpy.run_path(str(ROOT / "bench" / "bench_decide.py"))
    points = [bench["measure"](w, 20, 3) for w in (10, 60, 200)]
    cost = ", ".join(f"{p['us_per_window']:.0f} µs at {p['windows']} windows (full recompute "
                     f"{p['full_recompute_us']:.0f} µs, {p['ratio']:.1f}×)" for p in points)
    lines += ["", f"Replicates per scenario: {replicates}; 200 windows; α = 0.05 (harm tested "
              "at α/2, the rollback half); a look after every window.",
              "CPU cost of one decision (5 metrics × 4 segments; the decider's incremental "
              "state, `bench/bench_decide.py`, medians of 3 runs while other jobs shared the "
              f"cores): {cost}."]
    return "\n".join(lines)


def _event_row(job: tuple[int, int, int]) -> str:
    from streammon.sim.event_operating_points import evaluate_events, event_catalog

    index, replicates, seed = job
    scenario = event_catalog()[index]
    o = evaluate_events(scenario, replicates, seed + 10_000 * index)
    median = f"{o.median_rollback_window:g}" if o.median_rollback_window != float("inf") else "—"
    ci = f"[{_pct(o.rollback_ci[0])}, {_pct(o.rollback_ci[1])}]"
    pci = f"[{_pct(o.promote_ci[0])}, {_pct(o.promote_ci[1])}]"
    effect = "harm" if scenario.harmful else "none"
    return (f"| {o.name} | {effect} | {_pct(o.rollback)} {ci} | {median} | "
            f"{_pct(o.promote)} {pci} | {_pct(o.hold)} |")


def event_table(replicates: int, seed: int, jobs: int, only: str = "") -> str:
    from concurrent.futures import ProcessPoolExecutor

    from streammon.sim.event_operating_points import REQUESTS, WINDOWS, event_catalog

    names = [s.name for s in event_catalog()]
    wanted = [w for w in only.split(",") if w]
    work = [(i, replicates, seed) for i, name in enumerate(names)
            if not wanted or any(w in name for w in wanted)]
    rows = []
    with ProcessPoolExecutor(max_workers=jobs) as pool:
        for row in pool.map(_event_row, work):
            print(row, file=sys.stderr, flush=True)  # progress: each scenario as it ends
            rows.append(row)
    head = ["| scenario | true effect | rollbacks [Wilson 95%] | median windows to rollback "
            "| promotions [Wilson 95%] | held |", "|---|---|---|---|---|---|"]
    foot = ["", f"Replicates per scenario: {replicates}; {WINDOWS} one-minute windows of "
            f"{REQUESTS} requests; ramp 5/10/20/40/50% every 5 windows unless stated; "
            "α = 0.05; spec: conversion (margin 0.002), latency (2 ms), errors (0.002); "
            "conversion judged at its default attribution horizon (one window), 10 min in "
            "the outcome-delay row; latency and errors when their window closes; "
            "every replicate replayed by `replay_events`."]
    return "\n".join(head + rows + foot)


def production_table(replicates: int, seed: int) -> str:
    """The production spec (3 metrics + SRM guard), with and without a CUPED covariate."""
    from streammon.sim.cell_draws import make_plan
    from streammon.sim.cuped_draws import CovariatePlan, evaluate_production
    from streammon.sim.operating_points import fixed_horizon_windows

    fixed = fixed_horizon_windows(make_plan("binary", segment_means=(0.10,),
                                            relative_effect=-0.05))
    favoured = (8.0, 1.0, 1.0)  # spec weights: conversion the primary metric
    rows = [("conversion A/A, covariate R² = 0.2", 0.0, True, None),
            ("conversion A/A, no covariate", 0.0, False, None),
            ("conversion 10% -> 9.5% (-5% rel.), no covariate", -0.05, False, None),
            ("conversion 10% -> 9.5% (-5% rel.), covariate R² = 0.2", -0.05, True, None),
            ("conversion A/A, covariate R² = 0.2, weights 8:1:1", 0.0, True, favoured),
            ("conversion 10% -> 9.5% (-5% rel.), covariate R² = 0.2, weights 8:1:1", -0.05,
             True, favoured)]
    lines = ["| scenario | conversion judged on | streammon rollbacks | halted (SRM) "
             "| median windows to rollback | fixed-horizon windows (80% power, no covariate) "
             "| ratio |", "|---|---|---|---|---|---|---|"]
    for index, (name, effect, covariate, weights) in enumerate(rows):
        p = evaluate_production(CovariatePlan(relative_effect=effect), replicates,
                                seed + 1000 * index, covariate=covariate, weights=weights)
        harm = effect != 0.0
        median = f"{p.median_detection:g}" if harm else "—"
        ratio = f"{p.median_detection / fixed:.2f}×" if harm else "—"
        horizon = f"{fixed:.1f}" if harm else "—"
        lines.append(f"| {name} | {'CUPED-adjusted y' if covariate else 'y'} "
                     f"| {_pct(p.rollback_rate)} | {_pct(p.halted_rate)} | {median} "
                     f"| {horizon} | {ratio} |")
    lines += ["", f"Replicates per scenario: {replicates}; 200 windows of 60,000 requests, "
              "canary 5%, one segment at 10% conversion; production spec: conversion, "
              "latency (no effect), errors (no effect), harm e-values averaged (equal "
              "weights unless the row says: `weight` 8, 1, 1 in the spec) and rolled "
              "back at α/2 − α_srm = 0.024, sample-ratio check at α_srm = 0.001 "
              "(`streammon.sim.cuped_draws`)."]
    return "\n".join(lines)


def _write(start: str, end: str, text: str) -> None:
    doc = ROOT / "docs" / "statistics.md"
    before, rest = doc.read_text(encoding="utf-8").split(start)
    _, after = rest.split(end)
    doc.write_text(f"{before}{start}\n{text}\n{end}{after}", encoding="utf-8")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--replicates", type=int, default=1000)
    parser.add_argument("--event-replicates", type=int, default=300)
    parser.add_argument("--seed", type=int, default=20240)
    parser.add_argument("--section", choices=["cells", "events", "all"], default="all")
    parser.add_argument("--jobs", type=int, default=2, help="processes for the event section")
    parser.add_argument("--write", action="store_true", help="rewrite docs/statistics.md")
    parser.add_argument("--only", default="",
                        help="events: only scenarios whose name contains one of these "
                             "comma-separated words (a partial run; do not --write it)")
    args = parser.parse_args(argv)
    if args.section in ("cells", "all"):
        text = table(args.replicates, args.seed)
        print(text)
        if args.write:
            _write(START, END, text)
        text = production_table(args.replicates, args.seed)
        print(text)
        if args.write:
            _write(PROD_START, PROD_END, text)
    if args.section in ("events", "all"):
        text = event_table(args.event_replicates, args.seed, args.jobs, args.only)
        print(text)
        if args.write:
            _write(EVENTS_START, EVENTS_END, text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
