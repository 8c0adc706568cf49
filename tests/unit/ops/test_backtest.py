"""CSV backtest and additive cells."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from streammon.ops.backtest import load_cells_csv, main
from streammon.stats import StatsInputError, as_cells, replay

HEADER = "window,segment,n_a,sum_a,sumsq_a,n_b,sum_b,sumsq_b\n"


def _write(tmp_path: Path, rows: list[str]) -> Path:
    path = tmp_path / "cells.csv"
    path.write_text(HEADER + "".join(r + "\n" for r in rows), encoding="utf-8")
    return path


def test_csv_loads_into_window_by_segment_arrays(tmp_path: Path) -> None:
    """Rows land at (window, segment-in-order-of-appearance); repeats add; gaps are zero."""
    path = _write(tmp_path, ["0,web,100,10,10,10,1,1", "0,app,50,5,5,5,0,0",
                             "2,web,100,12,12,10,2,2", "2,web,1,1,1,0,0,0"])
    cells = load_cells_csv(path)
    assert cells["n_a"].shape == (3, 2)
    np.testing.assert_array_equal(cells["n_a"], [[100, 50], [0, 0], [101, 0]])
    np.testing.assert_array_equal(cells["sum_b"], [[1, 0], [0, 0], [2, 0]])


def test_main_prints_the_same_verdicts_as_replay(tmp_path: Path, capsys) -> None:
    """`streammon backtest FILE` prints one tab-separated verdict per window, as replay."""
    rows = [f"{w},all,57000,5700,5700,3000,{240 if w > 2 else 300},{240 if w > 2 else 300}"
            for w in range(25)]
    path = _write(tmp_path, rows)
    assert main([str(path), "--kind", "binary", "--bad-direction", "decrease"]) == 0
    lines = capsys.readouterr().out.splitlines()
    want = replay(load_cells_csv(path), kind="binary", bad_direction="decrease")
    assert [line.split("\t")[1] for line in lines] == want
    assert want[-1] == "rollback"


def test_main_reports_a_bad_file_and_returns_2(tmp_path: Path, capsys) -> None:
    """A CSV with a missing column exits 2 with a message naming the columns."""
    path = tmp_path / "bad.csv"
    path.write_text("window,segment,n_a\n0,a,1\n", encoding="utf-8")
    assert main([str(path)]) == 2
    assert "missing columns" in capsys.readouterr().err


def test_non_numeric_value_names_line_and_field(tmp_path: Path) -> None:
    """A non-numeric entry raises StatsInputError with its line and column."""
    with pytest.raises(StatsInputError, match="line 2: sum_a"):
        load_cells_csv(_write(tmp_path, ["0,web,100,ten,10,10,1,1"]))


def test_partial_cells_merge_by_addition() -> None:
    """Two partitions' summaries of the same windows add up to the summary of all data."""
    rng = np.random.default_rng(2)
    x = rng.integers(0, 2, size=(2, 5, 3, 400)).astype(float)   # partition, window, seg, req
    def summary(part: np.ndarray) -> dict[str, np.ndarray]:
        n = np.full(part.shape[:-1], float(part.shape[-1]))
        return {"n_a": n, "sum_a": part.sum(-1), "sumsq_a": (part**2).sum(-1),
                "n_b": n, "sum_b": part.sum(-1), "sumsq_b": (part**2).sum(-1)}
    merged = as_cells(summary(x[0]), "binary") + as_cells(summary(x[1]), "binary")
    whole = as_cells(summary(np.concatenate([x[0], x[1]], axis=-1)), "binary")
    for field, value in whole.to_dict().items():
        np.testing.assert_array_equal(merged.to_dict()[field], value)
