"""Backtest: replay the sequential test on a CSV of recorded cohort statistics.

The CSV has a header and one row per (window, segment) cell::

    window,segment,n_a,sum_a,sumsq_a,n_b,sum_b,sumsq_b
    0,mobile,57012,5731,5731,2988,281,281

``window`` is an integer (0, 1, 2, …; gaps are allowed and become empty windows),
``segment`` any label; ``n_*`` are request counts (exposures for ``--kind count``),
``sum_*`` the sum of the metric (successes, or events), ``sumsq_*`` the sum of its
squares (equal to ``sum`` for binary metrics). ``_a`` is the baseline, ``_b`` the canary.
Rows for the same cell add up. Run it as ``streammon backtest FILE --kind binary``.
"""

from __future__ import annotations

import argparse
import csv
import sys
from pathlib import Path

import numpy as np

from streammon.stats.cells import DIRECTIONS, FIELDS, KINDS, FloatArray, StatsInputError
from streammon.stats.sequence import replay

COLUMNS: tuple[str, ...] = ("window", "segment", *FIELDS)


def load_cells_csv(path: str | Path) -> dict[str, FloatArray]:
    """Read a cohort-statistics CSV into the six ``(windows, segments)`` arrays of ``replay``.

    Segments are ordered by first appearance; missing cells are zero.
    """
    with Path(path).open(newline="", encoding="utf-8") as handle:
        reader = csv.DictReader(handle)
        missing = [c for c in COLUMNS if c not in (reader.fieldnames or [])]
        if missing:
            raise StatsInputError(f"{path}: missing columns {missing}; need {list(COLUMNS)}")
        rows = list(reader)
    if not rows:
        raise StatsInputError(f"{path}: no data rows")
    segments = list(dict.fromkeys(row["segment"] for row in rows))
    windows = [_window(row, line) for line, row in enumerate(rows, start=2)]
    shape = (max(windows) + 1, len(segments))
    arrays = {f: np.zeros(shape) for f in FIELDS}
    for line, (row, window) in enumerate(zip(rows, windows, strict=True), start=2):
        column = segments.index(row["segment"])
        for field in FIELDS:
            arrays[field][window, column] += _number(row, field, line)
    return arrays


def _window(row: dict[str, str], line: int) -> int:
    try:
        window = int(row["window"])
    except ValueError as exc:
        raise StatsInputError(f"line {line}: window={row['window']!r} is not an integer") from exc
    if window < 0:
        raise StatsInputError(f"line {line}: window must be >= 0, got {window}")
    return window


def _number(row: dict[str, str], field: str, line: int) -> float:
    try:
        return float(row[field])
    except ValueError as exc:
        raise StatsInputError(f"line {line}: {field}={row[field]!r} is not a number") from exc


def build_parser() -> argparse.ArgumentParser:
    """Return the argument parser of ``streammon backtest``."""
    parser = argparse.ArgumentParser(prog="streammon backtest",
                                     description="Replay the sequential test on a CSV of cells.")
    parser.add_argument("file", help="CSV with columns " + ",".join(COLUMNS))
    parser.add_argument("--kind", choices=KINDS, default="binary")
    parser.add_argument("--bad-direction", choices=DIRECTIONS, default="decrease")
    parser.add_argument("--alpha", type=float, default=0.05)
    parser.add_argument("--margin", type=float, default=0.0)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Print one ``window<TAB>verdict`` line per window; return 0, or 2 on bad input."""
    args = build_parser().parse_args(argv)
    try:
        cells = load_cells_csv(args.file)
        verdicts = replay(cells, kind=args.kind, bad_direction=args.bad_direction,
                          alpha=args.alpha, margin=args.margin)
    except (OSError, StatsInputError) as exc:
        print(f"streammon backtest: {exc}", file=sys.stderr)
        return 2
    for window, verdict in enumerate(verdicts):
        print(f"{window}\t{verdict}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
