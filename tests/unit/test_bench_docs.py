"""``make bench --write-docs`` copies one run's numbers into docs/join.md, by code."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "bench"))

import docs_block

JOIN = {
    "single_event_join_events_per_s": 61234, "single_event_join_runs_events_per_s": [61234],
    "single_event_ceiling_events_per_s": 150000, "single_event_ratio": 0.408,
    "join_events_per_s": 130000, "ceiling_events_per_s": 400000, "ratio": 0.325,
    "two_workers_events_per_s": 140000, "two_workers_speedup": 1.08, "exact": True,
    "p50_outcome_to_summary_ms": 250.5, "p99_outcome_to_summary_ms": 612.25,
    "latency_outcomes_measured": 40000, "steady_events_per_s": 40000,
    "peak_rss_mb_steady_by_predictions": {"250000": 110.0}, "peak_rss_mb_backlog": 190.0,
    "single_event_peak_rss_mb_backlog": 200.0, "publish_events_per_s": 45000,
    "single_event_publish_events_per_s": 60000,
}


def test_the_join_doc_has_the_block_the_bench_writes() -> None:
    """docs/join.md holds exactly one pair of bench markers."""
    text = docs_block.JOIN_DOC.read_text()
    assert text.count(docs_block.START) == 1 and text.count(docs_block.END) == 1


def test_writing_replaces_only_the_block_with_this_runs_numbers(tmp_path: Path) -> None:
    """The block is replaced by the run's numbers; the text around it is kept."""
    doc = tmp_path / "join.md"
    doc.write_text(f"before\n{docs_block.START}\nold 1,000,000\n{docs_block.END}\nafter\n")
    docs_block.write_join_block({"benchmarks": {"bench_join": JOIN}}, (0.4, 1.6), doc)
    text = doc.read_text()
    assert text.startswith("before\n") and text.endswith("after\n")
    assert "old 1,000,000" not in text
    assert "| single events: join, events/s per worker | **61,234** | 61,234 |" in text
    assert "**612.2 ms**" in text and "load average 0.40 at its start and 1.60" in text


def test_a_doc_without_markers_is_an_error_not_a_silent_skip(tmp_path: Path) -> None:
    """A doc that lost its markers stops the write with the marker named."""
    doc = tmp_path / "join.md"
    doc.write_text("no markers\n")
    with pytest.raises(SystemExit, match="bench-join:start"):
        docs_block.write_join_block({"benchmarks": {"bench_join": JOIN}}, (0.0, 0.0), doc)


def test_ratios_pair_the_runs_of_a_round_not_the_medians_of_all_runs() -> None:
    import bench_join

    # The host's speed drifts: round 3 ran on a fast machine (both runs fast).
    rounds = [bench_join.Round({"events_per_s": one}, {"events_per_s": ceiling})
              for one, ceiling in ((100, 1000), (300, 1000), (200, 4000))]
    ratio = bench_join.paired_median(
        rounds, lambda r: r.one["events_per_s"] / r.ceiling["events_per_s"])
    assert ratio == pytest.approx(0.1)  # rounds' ratios 0.1, 0.3, 0.05; medians' ratio 0.2
    with pytest.raises(ValueError, match="two-worker"):
        bench_join._two(rounds[0])
