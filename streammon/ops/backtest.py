"""``streammon backtest``: replay recorded events (``--spec``) or a CSV of cohort statistics.

``main_events`` replays prediction and outcome events (JSON lines) through the worker's
join and decider (:func:`streammon.backtest.replay_events`) and prints one JSON decision
per closed window. ``main`` replays the sequential test on a CSV of cohort statistics.
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
import json
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np

from streammon.decide.event_replay import ReplayCounts, replay_events
from streammon.errors import StreamMonError
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



def read_jsonl(path: str | Path) -> Iterator[Any]:
    """Yield the JSON value of every non-blank line of ``path`` (a kcat dump, for example).

    A line that is not JSON yields ``None``, which the replay counts as malformed.
    """
    with Path(path).open(encoding="utf-8") as handle:
        for line in handle:
            text = line.strip()
            if not text:
                continue
            try:
                yield json.loads(text)
            except json.JSONDecodeError:
                yield None


def build_events_parser() -> argparse.ArgumentParser:
    """Return the parser of ``streammon backtest --spec ... --predictions ... --outcomes ...``."""
    parser = argparse.ArgumentParser(
        prog="streammon backtest",
        description="Replay the join and the decider on recorded prediction and outcome "
                    "events; print one JSON decision per closed window.")
    parser.add_argument("--spec", required=True, help="rollout spec (JSON, as in the README)")
    parser.add_argument("--predictions", required=True, help="prediction events, JSON lines")
    parser.add_argument("--outcomes", required=True, help="outcome events, JSON lines")
    parser.add_argument("--commands", help="operator hold/resume commands, JSON lines")
    return parser


def main_events(argv: list[str] | None = None) -> int:
    """Print one JSON line per decision; return 0, or 2 on a bad spec or unreadable file."""
    args = build_events_parser().parse_args(argv)
    counts = ReplayCounts()
    try:
        spec = json.loads(Path(args.spec).read_text(encoding="utf-8"))
        commands = read_jsonl(args.commands) if args.commands else ()
        decisions = replay_events(spec, read_jsonl(args.predictions), read_jsonl(args.outcomes),
                                  commands=commands, counts=counts)
    except (OSError, json.JSONDecodeError, StreamMonError) as exc:
        print(f"streammon backtest: {exc}", file=sys.stderr)
        return 2
    for decision in decisions:
        print(json.dumps(decision))
    print(f"streammon backtest: {counts.predictions} predictions, {counts.outcomes} outcomes, "
          f"{counts.malformed} malformed (skipped), {counts.other_rollouts} of other rollouts",
          file=sys.stderr)
    for error in counts.errors:
        print(f"  skipped {error}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
