# ruff: noqa: RUF002  (formulas use Greek letters and math signs)
"""Memory and hot-path cost of per-unit join state (DESIGN rule 10), pure: no Kafka.

Feeds ``--units`` predictions, one distinct ``unit_id`` each (one rollout, two arms, two
segments), into :class:`streammon.join.state.JoinState`, and the same predictions without
a unit id, and reports:

* ``unit_state_bytes_per_unit_open``: extra bytes per unit while its first-exposure cell
  may still change (its running sums), from ``tracemalloc``: (with units − without) / n;
* ``unit_state_bytes_per_unit_frozen``: the same once every unit is frozen to its seen
  marker (a 64-bit hash in the rollout's set) and the requests have expired;
* ``rss_mb_1m_units``: the peak RSS of a fresh process holding the join state of that many
  open units (name kept for the default 1,000,000);
* ``pure_join_events_per_s_units`` / ``_no_units`` and their ratio: ``add_predictions``
  throughput per CPU second with and without unit ids (median of ``--repeat`` interleaved
  runs; every prediction of the units run is a new unit, the worst case).

Prints one JSON line.
"""

from __future__ import annotations

import argparse
import gc
import json
import resource
import statistics
import subprocess
import sys
import time
import tracemalloc

from streammon.events import Prediction
from streammon.join.state import JoinConfig, JoinState

CONFIG = JoinConfig(window_ms=10_000, ttl_ms=60_000, grace_ms=5_000)
BIG_TTL = JoinConfig(window_ms=10_000, ttl_ms=10**10, grace_ms=5_000)
"""Nothing expires: every unit stays open (the worst case for memory)."""
T0_MS = 1_700_000_000_000


def predictions(n: int, *, units: bool, start: int = 0) -> list[Prediction]:
    """Return predictions ``start..start+n`` 1 ms apart, each of its own unit when ``units``."""
    return [Prediction(request_id=f"req-{i}", rollout_id="bench", model_version="m",
                       arm="canary" if i % 4 == 0 else "baseline", ts_ms=T0_MS + i,
                       segment="mobile" if i % 2 else "desktop", latency_ms=(i % 200) / 4,
                       unit_id=f"unit-{i}" if units else None)
            for i in range(start, start + n)]


def state_bytes(n: int, *, units: bool, freeze: bool) -> int:
    """Return the bytes tracemalloc attributes to a join state fed ``n`` predictions."""
    preds = predictions(n, units=units)
    gc.collect()
    tracemalloc.start()
    state = JoinState(config=JoinConfig(window_ms=10_000, ttl_ms=60_000, grace_ms=5_000,
                                        cell_retention_ms=10**12))
    state.add_predictions(preds)
    if freeze:  # every prediction expired, every unit frozen; cells kept (long retention)
        state.expire(preds[-1].ts_ms + CONFIG.window_ms + CONFIG.ttl_ms + 1)
        # dicts keep their peak capacity: in a running join the two are sized by the
        # requests and units open at once (a TTL's worth), not by every unit ever seen
        state.units, state.pending = dict(state.units), dict(state.pending)
    state.take_changes()  # the worker writes and clears these after every batch
    gc.collect()
    used = tracemalloc.get_traced_memory()[0]
    tracemalloc.stop()
    del state
    return used


def throughput(preds: list[Prediction]) -> float:
    """Return predictions per CPU second taken by add_predictions (one fresh state).

    CPU time of this process, not wall time: the machine may be shared, and the join is
    single-threaded and CPU-bound.
    """
    state = JoinState(config=CONFIG)
    start = time.process_time()
    for i in range(0, len(preds), 500):
        state.add_predictions(preds[i:i + 500])
        state.expire()
        state.take_changes()  # the worker writes and clears these after every batch
    return len(preds) / (time.process_time() - start)


def rss_child(n: int) -> float:
    """Return the peak RSS (MB) of a fresh process whose join holds ``n`` open units
    (fed in chunks of 10,000, so the input events are not what is measured; VmHWM, since
    ``ru_maxrss`` survives ``exec`` and would report the parent's peak)."""
    code = (f"import resource, sys; sys.path.insert(0, {__file__.rsplit('/', 1)[0]!r}); "
            "import bench_units as b; from streammon.join.state import JoinState; "
            "s = JoinState(config=b.BIG_TTL)\n"
            f"for i in range(0, {n}, 10_000):\n"
            f"    s.add_predictions(b.predictions(min(10_000, {n} - i), units=True, start=i))\n"
            "    s.take_changes()\n"
            "hwm = [ln for ln in open('/proc/self/status') if ln.startswith('VmHWM')]\n"
            "print(int(hwm[0].split()[1]) / 1024)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True)
    return float(out.stdout.strip().splitlines()[-1])


def main(argv: list[str] | None = None) -> int:
    """Run the measurements; print one JSON line."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--units", type=int, default=1_000_000)
    parser.add_argument("--throughput-events", type=int, default=200_000)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args(argv)
    n = args.units
    open_bytes = (state_bytes(n, units=True, freeze=False)
                  - state_bytes(n, units=False, freeze=False)) / n
    frozen_bytes = (state_bytes(n, units=True, freeze=True)
                    - state_bytes(n, units=False, freeze=True)) / n
    m = args.throughput_events
    a, b = predictions(m, units=True), predictions(m, units=False)
    rates_units, rates_plain = [], []
    for _ in range(args.repeat):  # interleaved, so both see the same machine
        rates_units.append(throughput(a))
        rates_plain.append(throughput(b))
    units_rate, plain_rate = statistics.median(rates_units), statistics.median(rates_plain)
    print(json.dumps({
        "bench": "units", "units": n,
        "unit_state_bytes_per_unit_open": round(open_bytes, 1),
        "unit_state_bytes_per_unit_frozen": round(frozen_bytes, 1),
        "rss_mb_1m_units": round(rss_child(n), 1),
        "pure_join_events_per_s_units": round(units_rate),
        "pure_join_events_per_s_no_units": round(plain_rate),
        "pure_join_units_ratio": round(units_rate / plain_rate, 3),
        "parent_peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
                                    1)}))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
