"""Benchmark the Faust join against the plain librdkafka+msgspec ceiling, same run, same topics.

Starts its own embedded stack, preloads a deterministic workload (predictions, 90% with
outcomes, two arms, two segments, some duplicates) through the publisher SDK, then:

1. in each of ``--repeat`` rounds, runs ``streammon worker`` over it (fresh consumer
   group each time, whose decider starts at the end of the cohorts topic as a deployed
   worker's does: ``joinrun.commit_at_end``), then the ceiling join over the same
   topics, then (envelopes) two workers in one group; checks every run's final cohort
   statistics against the truth computed from the workload (``exact``); reports the
   worker's peak RSS. Throughputs are medians over rounds; ratios (join/ceiling, two
   workers/one) are the median of each round's ratio, since a shared host's speed
   drifts between rounds;
2. publishes the workload live at 40,000 events/s to a running worker, at two sizes, and
   reports the worker's peak RSS (memory under a steady stream with TTL expiry; the
   preloaded runs' peak RSS is reported too, as ``peak_rss_mb_backlog``);
3. publishes live at 10,000 events/s and measures outcome-to-summary latency.

Prints one JSON line (see ``bench/run_all.py`` for the table).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).parent))

import joinrun
from ceiling import run_ceiling
from latency import latencies_ms, percentile, publish_live

from streammon.config.settings import KafkaSettings, Settings, TopicNames
from streammon.devstack import DevStack
from streammon.kafka.topics import apply_topics, check_copartitioned
from streammon.sdk.publisher import Publisher
from streammon.sim.join_workload import (
    JoinWorkload,
    compute_truth,
    count_events,
    diff_cells,
    generate,
)

STEADY_EVENTS_PER_S = 40_000


def preload(settings: Settings, workload: JoinWorkload, batch_max_events: int = 500) -> float:
    """Publish the workload through the SDK (a progress bar on stderr); return events/s.

    ``batch_max_events=1`` sends one event per Kafka message, as kcat, Go or Node do.
    """
    from rich.console import Console
    from rich.progress import Progress

    total = count_events(workload)
    start = time.perf_counter()
    with Progress(console=Console(stderr=True), transient=True) as bar, \
            Publisher(settings=settings, strict=True, max_queue_messages=2_000_000,
                      batch_max_events=batch_max_events) as pub:
        task = bar.add_task("preloading the workload", total=total)
        for i, (kind, fields) in enumerate(generate(workload), 1):
            (pub.prediction if kind == "prediction" else pub.outcome)(**fields)
            if i % 20_000 == 0:
                bar.update(task, completed=i)
    return total / (time.perf_counter() - start)


def run_join(settings: Settings, workload: JoinWorkload, partitions: int, log_dir: Path,
             tag: str, truth: Any) -> dict[str, Any]:
    """Run one worker over the preloaded topics; return throughput, exactness and RSS."""
    total = count_events(workload)
    cohorts_start = joinrun.end_offsets(settings, settings.topics.cohorts, 1)[0]
    run, proc = joinrun.start_worker(settings, log_dir, window_ms=workload.window_ms,
                                     ttl_ms=workload.ttl_ms, tag=tag)
    try:
        machine_before = joinrun.machine_busy_jiffies()
        progress = joinrun.follow_changelog(settings, run.app_id, partitions, total, 300, proc,
                                            cpu_pids=(proc.pid,))
        busy = joinrun.busy_fraction(machine_before, joinrun.machine_busy_jiffies())
        per_cpu_s = progress.events_per_cpu_s()
        want_n = sum(int(c.sums.get("label", [0])[0]) for c in truth.values())
        cells, _ = joinrun.read_cells(settings, cohorts_start, want_n, timeout_s=30)
        rss_mb = joinrun.peak_rss_mb(proc.pid)
    finally:
        joinrun.stop_worker(proc)
    rate, seconds = progress.rate() if progress.points else (0.0, 0.0)
    diffs = diff_cells(cells, truth)
    for line in diffs[:5]:
        print("  not exact:", line, file=sys.stderr)
    return {"events": progress.events(), "events_per_s": rate, "seconds": seconds,
            "exact": progress.events() == total and not diffs, "peak_rss_mb": rss_mb,
            "events_per_cpu_s": per_cpu_s, "machine_busy": busy}


def run_two_workers(settings: Settings, workload: JoinWorkload, partitions: int,
                    log_dir: Path, tag: str, truth: Any) -> dict[str, Any]:
    """Run two workers in one group over the preloaded topics; return their joint rate."""
    total = count_events(workload)
    cohorts_start = joinrun.end_offsets(settings, settings.topics.cohorts, 1)[0]
    run, first = joinrun.start_worker(settings, log_dir, window_ms=workload.window_ms,
                                      ttl_ms=workload.ttl_ms, tag=f"{tag}a")
    _, second = joinrun.start_worker(settings, log_dir, window_ms=workload.window_ms,
                                     ttl_ms=workload.ttl_ms, tag=f"{tag}b", app_id=run.app_id)
    try:
        machine_before = joinrun.machine_busy_jiffies()
        progress = joinrun.follow_changelog(settings, run.app_id, partitions, total, 300, first,
                                            cpu_pids=(first.pid, second.pid))
        busy = joinrun.busy_fraction(machine_before, joinrun.machine_busy_jiffies())
        per_cpu_s = progress.events_per_cpu_s()
        want_n = sum(int(c.sums.get("label", [0])[0]) for c in truth.values())
        cells, _ = joinrun.read_cells(settings, cohorts_start, want_n, timeout_s=30)
    finally:
        joinrun.stop_worker(first)
        joinrun.stop_worker(second)
    rate, _ = progress.rate() if progress.points else (0.0, 0.0)
    return {"events_per_s": rate, "events_per_cpu_s": per_cpu_s, "machine_busy": busy,
            "exact": progress.events() == total and not diff_cells(cells, truth)}


def run_latency(settings: Settings, log_dir: Path, partitions: int) -> dict[str, float]:
    """Measure outcome-to-summary latency at 10,000 events/s on fresh topics."""
    live = Settings(kafka=settings.kafka, topics=TopicNames(prefix="bench-live."),
                    app_id="bench-live")
    apply_topics(live.kafka, live.topics)
    _run, proc = joinrun.start_worker(live, log_dir, window_ms=1000, ttl_ms=60_000, tag="live")
    try:
        publish_live(live, rollout_id="warmup", events_per_s=200, seconds=1.0,
                     window_ms=1000, partitions=partitions)
        joinrun.read_cells(live, 0, 1, timeout_s=30)
        start = joinrun.end_offsets(live, live.topics.cohorts, 1)[0]
        times = publish_live(live, rollout_id="live", events_per_s=10_000, seconds=10.0,
                             window_ms=1000, partitions=partitions)
        n = sum(len(v) for v in times.values())
        _, messages = joinrun.read_cells(live, start, n, timeout_s=30)
    finally:
        joinrun.stop_worker(proc)
    lat = latencies_ms(times, messages)
    return {"outcomes": n, "measured": len(lat), "p50_ms": percentile(lat, 0.5),
            "p99_ms": percentile(lat, 0.99), "max_ms": max(lat, default=float("nan"))}


def main(argv: list[str] | None = None) -> int:
    """Run the benchmark and print one JSON line."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--predictions", type=int, default=500_000)
    parser.add_argument("--single-predictions", type=int, default=250_000,
                        help="predictions of the single-event workload (one event/message)")
    parser.add_argument("--cardinality-units", type=int, default=1_000_000,
                        help="predictions (one distinct unit each) of the memory phase")
    parser.add_argument("--cardinality-segments", type=int, default=10_000)
    parser.add_argument("--repeat", type=int, default=5,
                        help="rounds (one worker, ceiling, two workers in turn); medians")
    parser.add_argument("--join-engine", choices=["batch", "faust"], default="batch",
                        help="the worker's join engine (faust: the per-message agent)")
    args = parser.parse_args(argv)
    joinrun.WORKER_ARGS = ("--join-engine", args.join_engine)
    with tempfile.TemporaryDirectory() as tmp, DevStack(data_dir=tmp) as info:
        log_dir = Path(tmp)
        kafka = KafkaSettings(bootstrap_servers=info.kafka_bootstrap, fast_group_join=True)
        result = bench(kafka, log_dir, args.predictions, args.repeat)
        result.update(bench_single(kafka, log_dir, args.single_predictions, args.repeat))
        if args.cardinality_units:
            result.update(run_cardinality(kafka, log_dir, args.cardinality_units,
                                          args.cardinality_units, args.cardinality_segments))
        result["join_engine"] = args.join_engine
        result["envelope_exact"] = result["exact"]
        result["exact"] = result["exact"] and result["single_event_exact"]
    print(json.dumps(result))
    return 0


def run_steady(kafka: KafkaSettings, log_dir: Path, n: int, events_per_s: int) -> float:
    """Publish a workload live at ``events_per_s`` to a running worker; return its peak RSS."""
    settings = Settings(kafka=kafka, topics=TopicNames(prefix=f"steady{n}."))
    apply_topics(kafka, settings.topics)
    partitions = check_copartitioned(kafka, settings.topics)
    workload = JoinWorkload(n_predictions=n)
    run, proc = joinrun.start_worker(settings, log_dir, window_ms=workload.window_ms,
                                     ttl_ms=workload.ttl_ms, tag=f"steady{n}")
    try:
        time.sleep(5)  # let the worker join its group before the stream starts
        start = time.monotonic()
        with Publisher(settings=settings, strict=True) as pub:
            for i, (kind, fields) in enumerate(generate(workload)):
                (pub.prediction if kind == "prediction" else pub.outcome)(**fields)
                if i % 1000 == 0:
                    time.sleep(max(0.0, start + i / events_per_s - time.monotonic()))
        joinrun.follow_changelog(settings, run.app_id, partitions, count_events(workload),
                                 120, proc)
        return joinrun.peak_rss_mb(proc.pid)
    finally:
        joinrun.stop_worker(proc)


@dataclasses.dataclass
class Round:
    """One round of runs made back to back, so they share the machine's conditions."""

    one: dict[str, Any]
    ceiling: dict[str, Any]
    two: dict[str, Any] | None = None


def paired_rounds(settings: Settings, workload: JoinWorkload, partitions: int,
                  log_dir: Path, tag: str, repeat: int, *, two_workers: bool = False,
                  ) -> list[Round]:
    """Run one worker, the ceiling (and two workers) in turn, ``repeat`` rounds.

    A shared host's speed drifts by ±20% over minutes, so a ratio compares runs of the
    same round, and the reported ratio is the median over rounds.
    """
    truth = compute_truth(workload, partitions)
    rounds = []
    for i in range(repeat):
        one = run_join(settings, workload, partitions, log_dir, f"{tag}{i}", truth)
        ceiling = run_ceiling(settings, partitions=partitions,
                              total_events=count_events(workload), window_ms=workload.window_ms)
        two = (run_two_workers(settings, workload, partitions, log_dir, f"{tag}two{i}", truth)
               if two_workers else None)
        rounds.append(Round(one, ceiling, two))
    return rounds


def _two(r: Round) -> dict[str, Any]:
    if r.two is None:
        raise ValueError("this round ran no two-worker group")
    return r.two


def paired_median(rounds: list[Round], over: Callable[[Round], float]) -> float:
    """Return the median over rounds of ``over(round)`` (a ratio of that round's runs)."""
    return float(statistics.median(over(r) for r in rounds))


def run_cardinality(kafka: KafkaSettings, log_dir: Path, n: int, units: int,
                    segments: int) -> dict[str, Any]:
    """Preload ``n`` predictions over ``units`` units and ``segments`` segments (beyond the
    default segment cap, so the excess goes to dead letters); return the peak RSS of a
    join-only worker (``--no-decide``) and of a full one (join + decider)."""
    settings = Settings(kafka=kafka, topics=TopicNames(prefix="bench-card."))
    apply_topics(kafka, settings.topics)
    partitions = check_copartitioned(kafka, settings.topics)
    workload = JoinWorkload(n_predictions=n, seed=13, units=units,
                            segments=tuple(f"segment-{i}" for i in range(segments)))
    preload(settings, workload)
    out: dict[str, Any] = {"cardinality_predictions": n, "cardinality_units": units,
                           "cardinality_segments_attempted": segments}
    for name, extra in (("join_only", ("--no-decide",)), ("with_decider", ())):
        run, proc = joinrun.start_worker(settings, log_dir, window_ms=workload.window_ms,
                                         ttl_ms=workload.ttl_ms, tag=f"card-{name}",
                                         extra=extra)
        try:
            progress = joinrun.follow_changelog(settings, run.app_id, partitions,
                                                count_events(workload), 600, proc)
            out[f"cardinality_complete_{name}"] = progress.events() == count_events(workload)
            out[f"peak_rss_mb_1m_units_10k_segments_{name}"] = round(
                joinrun.peak_rss_mb(proc.pid), 1)
        finally:
            joinrun.stop_worker(proc)
    out["peak_rss_mb_1m_units_10k_segments"] = out[
        "peak_rss_mb_1m_units_10k_segments_join_only"]
    return out


def bench_single(kafka: KafkaSettings, log_dir: Path, n: int, repeat: int) -> dict[str, Any]:
    """The join and its ceiling over single-event messages (one event per Kafka message)."""
    settings = Settings(kafka=kafka, topics=TopicNames(prefix="bench-single."))
    apply_topics(kafka, settings.topics)
    partitions = check_copartitioned(kafka, settings.topics)
    workload = JoinWorkload(n_predictions=n, seed=11)
    publish_rate = preload(settings, workload, batch_max_events=1)
    rounds = paired_rounds(settings, workload, partitions, log_dir, "single", repeat)
    runs, ceiling = [r.one for r in rounds], [r.ceiling for r in rounds]
    join_rate = statistics.median(r["events_per_s"] for r in runs)
    ceiling_rate = statistics.median(c["events_per_s"] for c in ceiling)
    return {
        "single_event_predictions": n, "single_event_events": count_events(workload),
        "single_event_publish_events_per_s": round(publish_rate),
        "single_event_join_events_per_s": round(join_rate),
        "single_event_join_runs_events_per_s": [round(r["events_per_s"]) for r in runs],
        "single_event_ceiling_events_per_s": round(ceiling_rate),
        "single_event_ceiling_runs_events_per_s": [round(c["events_per_s"]) for c in ceiling],
        "single_event_ratio": round(paired_median(
            rounds, lambda r: r.one["events_per_s"] / r.ceiling["events_per_s"]), 3),
        "single_event_exact": all(r["exact"] for r in runs),
        "single_event_peak_rss_mb_backlog": round(max(r["peak_rss_mb"] for r in runs), 1),
    }


def bench(kafka: KafkaSettings, log_dir: Path, n: int, repeat: int) -> dict[str, Any]:
    """Run every phase against the stack at ``kafka``; return the result dict."""
    settings = Settings(kafka=kafka, topics=TopicNames(prefix="bench."))
    apply_topics(kafka, settings.topics)
    partitions = check_copartitioned(kafka, settings.topics)
    workload = JoinWorkload(n_predictions=n)
    publish_rate = preload(settings, workload)
    rounds = paired_rounds(settings, workload, partitions, log_dir, "run", repeat,
                           two_workers=True)
    runs, ceiling = [r.one for r in rounds], [r.ceiling for r in rounds]
    two = [r.two for r in rounds if r.two is not None]
    steady = {size: run_steady(kafka, log_dir, size, STEADY_EVENTS_PER_S)
              for size in (n // 2, n)}
    latency = run_latency(settings, log_dir, partitions)
    join_rate = statistics.median(r["events_per_s"] for r in runs)
    ceiling_rate = statistics.median(c["events_per_s"] for c in ceiling)
    return {
        "bench": "join", "predictions": n, "events": count_events(workload),
        "partitions": partitions, "publish_events_per_s": round(publish_rate),
        "join_events_per_s": round(join_rate),
        "join_runs_events_per_s": [round(r["events_per_s"]) for r in runs],
        "ceiling_events_per_s": round(ceiling_rate),
        "ceiling_runs_events_per_s": [round(c["events_per_s"]) for c in ceiling],
        "ratio": round(paired_median(
            rounds, lambda r: r.one["events_per_s"] / r.ceiling["events_per_s"]), 3),
        "exact": all(r["exact"] for r in runs) and all(t["exact"] for t in two),
        "two_workers_events_per_s": round(statistics.median(t["events_per_s"] for t in two)),
        "two_workers_runs_events_per_s": [round(t["events_per_s"]) for t in two],
        "two_workers_speedup": round(paired_median(
            rounds, lambda r: _two(r)["events_per_s"] / r.one["events_per_s"]), 2),
        # Scale-out per CPU: events per worker CPU-second, two workers over one (1.0 means
        # the join does the same work per event when split), and how busy the whole
        # machine was meanwhile (1.0 = every core busy: the speed-up measures the machine).
        "two_workers_events_per_cpu_s_ratio": round(paired_median(
            rounds, lambda r: _two(r)["events_per_cpu_s"] / r.one["events_per_cpu_s"]), 2),
        "machine_busy_one_worker": round(statistics.median(r["machine_busy"] for r in runs), 2),
        "machine_busy_two_workers": round(statistics.median(t["machine_busy"] for t in two), 2),
        "peak_rss_mb": round(steady[n], 1),
        "steady_events_per_s": STEADY_EVENTS_PER_S,
        "peak_rss_mb_steady_by_predictions": {str(k): round(v, 1) for k, v in steady.items()},
        "peak_rss_mb_backlog": round(max(r["peak_rss_mb"] for r in runs), 1),
        "p99_outcome_to_summary_ms": round(latency["p99_ms"], 1),
        "p50_outcome_to_summary_ms": round(latency["p50_ms"], 1),
        "latency_outcomes_measured": latency["measured"],
    }


if __name__ == "__main__":
    raise SystemExit(main())
