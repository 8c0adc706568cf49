"""``make bench``: run every benchmark, print a table, then one JSON line with all results.

Each benchmark is a script under ``bench/`` that prints one JSON line last; this runs
them one after the other (never concurrently: the machine has two cores), in child
processes, and collects those lines. The join benchmark's headline numbers are lifted
to the top level of the final JSON (``join_events_per_s``, ``ceiling_events_per_s``,
``ratio``, ``peak_rss_mb``, ``p99_outcome_to_summary_ms``, ``exact``), and so are the
per-unit state's (``unit_state_bytes_per_unit_open`` / ``_frozen``, ``rss_mb_1m_units``,
``pure_join_units_ratio``).

``--write-docs`` also copies the join results into ``docs/join.md`` (between its bench
markers) and the whole final line into ``docs/bench-latest.json``.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

BENCH_DIR = Path(__file__).parent
sys.path.insert(0, str(BENCH_DIR))

import docs_block  # noqa: E402

SCRIPTS = ("bench_join.py", "bench_decide.py", "bench_switch.py", "bench_units.py")
HEADLINE = ("join_events_per_s", "ceiling_events_per_s", "ratio", "exact", "peak_rss_mb",
            "p99_outcome_to_summary_ms", "single_event_join_events_per_s",
            "single_event_ceiling_events_per_s", "single_event_ratio", "single_event_exact",
            "peak_rss_mb_1m_units_10k_segments", "two_workers_speedup")
UNITS_HEADLINE = ("unit_state_bytes_per_unit_open", "unit_state_bytes_per_unit_frozen",
                  "rss_mb_1m_units", "pure_join_units_ratio")
"""Per-unit join state (``bench_units.py``): memory at 1M units, cost on the hot path."""


DECIDE_HEADLINE = ("decide_us_per_window", "decide_full_recompute_us", "decide_ratio",
                   "decide_windows")
"""The decider's cost per window (incremental) and the full recompute, same run."""


def run_script(name: str, timeout_s: float = 2700.0) -> dict[str, Any]:
    """Run one benchmark script; return its last JSON line (or an error record)."""
    path = BENCH_DIR / name
    if not path.exists():
        return {"bench": name, "skipped": "not present"}
    start = time.monotonic()
    proc = subprocess.run([sys.executable, str(path)], capture_output=True, text=True,
                          timeout=timeout_s, check=False)
    sys.stderr.write(proc.stderr[-2000:] if proc.returncode else "")
    lines = [ln for ln in proc.stdout.splitlines() if ln.startswith("{")]
    if proc.returncode or not lines:
        return {"bench": name, "error": f"exit {proc.returncode}", "stdout": proc.stdout[-500:]}
    result: dict[str, Any] = json.loads(lines[-1])
    result["wall_s"] = round(time.monotonic() - start, 1)
    return result


def table(results: dict[str, dict[str, Any]]) -> str:
    """Return a plain-text table: one row per (benchmark, scalar result)."""
    rows = []
    for name, result in results.items():
        for key, value in result.items():
            if isinstance(value, int | float | str | bool) and key != "bench":
                rows.append((name, key, str(value)))
            elif key != "bench":
                rows.append((name, key, json.dumps(value)[:60]))
    width = max((len(r[0]) + len(r[1]) for r in rows), default=10) + 3
    return "\n".join(f"{n}  {k}".ljust(width) + v for n, k, v in rows)


def main(argv: list[str] | None = None) -> int:
    """Run all benchmarks; print the table and the final JSON line."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--write-docs", action="store_true",
                        help="copy the results into docs/join.md and docs/bench-latest.json")
    args = parser.parse_args(argv)
    load_start = docs_block.load_average()
    results = {name.removesuffix(".py"): run_script(name) for name in SCRIPTS}
    print(table(results))
    join = results.get("bench_join", {})
    final: dict[str, Any] = {key: join.get(key) for key in HEADLINE}
    units = results.get("bench_units", {})
    final.update({key: units.get(key) for key in UNITS_HEADLINE})
    decide = results.get("bench_decide", {})
    final.update({key: decide.get(key) for key in DECIDE_HEADLINE})
    final["benchmarks"] = results
    print(json.dumps(final))
    if "error" in join:
        return 1
    if args.write_docs:
        docs_block.write_join_block(final, (load_start, docs_block.load_average()))
        (docs_block.ROOT / "docs" / "bench-latest.json").write_text(
            json.dumps(final, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
