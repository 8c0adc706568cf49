# ruff: noqa: RUF002  (formulas use Greek letters and math signs)
"""A unit enters the comparison once, at its first exposure, aggregated per unit."""

from __future__ import annotations

import numpy as np
import pytest
from helpers import outcome, pred

from streammon.events import CellKey
from streammon.join.changelog import JoinLog, restore
from streammon.join.state import JoinConfig, JoinState
from streammon.stats.ratio import linearize

CONFIG = JoinConfig(window_ms=1_000, ttl_ms=5_000, grace_ms=500)
CANARY: CellKey = ("r1", 1_000, "all", "canary")


def test_a_units_requests_in_its_first_window_count_once_as_one_unit() -> None:
    """Three requests of one unit in its first-exposure window make n = 1 unit with y = Σ
    and m = 3: the excess sums carry m, and the error metric counts the unit once."""
    state = JoinState(config=CONFIG)
    for i, lat in enumerate((10.0, 20.0, 30.0)):
        state.add_prediction(pred(f"q{i}", ts_ms=1_100 + i, unit_id="u", latency_ms=lat,
                                  error=True))
    sums = state.cells[CANARY].sums
    assert sums["latency_ms"] == [1, 60.0, 3600.0, 2.0, 8.0, 120.0]
    assert sums["error"][:3] == [1, 1.0, 1.0]


def test_the_latency_tail_counts_a_unit_once_by_its_first_latency() -> None:
    """The tail test's bins hold one draw per unit (its first request's latency), so a
    sticky user's correlated slow requests count once; requests without a unit each
    count."""
    from streammon.join.cells import latency_bin, latency_bin_metric

    state = JoinState(config=CONFIG)
    for i, lat in enumerate((10.0, 900.0, 900.0)):
        state.add_prediction(pred(f"q{i}", ts_ms=1_100 + i, unit_id="u", latency_ms=lat))
    for i in range(2):
        state.add_prediction(pred(f"r{i}", ts_ms=1_200 + i, latency_ms=900.0))
    sums = state.cells[CANARY].sums
    bins = {k: v[0] for k, v in sums.items() if k.startswith("latency_ms#")}
    assert bins == {latency_bin_metric(latency_bin(10.0)): 1,
                    latency_bin_metric(latency_bin(900.0)): 2}


def test_later_requests_of_a_unit_are_excluded_and_their_outcomes_counted() -> None:
    """A unit's request in a later window (here in the other arm, as after a ramp step) is
    left out of every cell and counted; its outcome is counted as excluded, not as an
    orphan or a duplicate, and a repeat of that outcome is a duplicate."""
    state = JoinState(config=CONFIG)
    state.add_prediction(pred("a", ts_ms=1_100, unit_id="u", arm="baseline"))
    state.add_prediction(pred("b", ts_ms=2_100, unit_id="u", arm="canary"))
    state.add_outcome(outcome("b", ts_ms=2_200))
    state.add_outcome(outcome("b", ts_ms=2_300))
    assert set(state.cells) == {("r1", 1_000, "all", "baseline")}
    assert state.counters["unit_repeat_requests"] == 1
    assert state.counters["excluded_outcomes"] == 1
    assert state.counters["duplicate_outcomes"] == 1
    state.expire(60_000)
    assert state.counters["orphan_outcomes"] == 0


def test_a_frozen_unit_stays_excluded_and_outcome_first_is_handled() -> None:
    """Once its first-exposure cell can no longer change the unit is reduced to a seen
    marker, which still excludes its later requests (even when their outcome came first)."""
    state = JoinState(config=CONFIG)
    state.add_prediction(pred("a", ts_ms=1_100, unit_id="u"))
    state.add_outcome(outcome("a", ts_ms=1_200))
    state.add_prediction(pred("z", ts_ms=9_000))  # keeps the rollout's cells alive
    state.expire(7_000)
    assert not state.units and len(state.rollouts["r1"].seen) == 1
    state.add_outcome(outcome("c", ts_ms=9_100))
    state.add_prediction(pred("c", ts_ms=9_050, unit_id="u"))
    assert state.counters["unit_repeat_requests"] == 1
    assert state.counters["excluded_outcomes"] == 1
    assert state.cells[CANARY].sums["label"][:3] == [1, 1.0, 1.0]


def test_outcomes_update_the_units_ratio_sums() -> None:
    """Labels of a unit's requests add to its y and m: two requests with labels 1 and 0
    give n = 1, Σy = 1, Σy² = 1, Σ(m−1) = 1, Σ(m²−1) = 3, Σy(m−1) = 1."""
    state = JoinState(config=CONFIG)
    state.add_prediction(pred("a", ts_ms=1_100, unit_id="u"))
    state.add_outcome(outcome("b", ts_ms=1_150, label=0.0))  # before its prediction
    state.add_prediction(pred("b", ts_ms=1_300, unit_id="u"))
    state.add_outcome(outcome("a", ts_ms=1_400, label=1.0))
    assert state.cells[CANARY].sums["label"] == [1, 1.0, 1.0, 1.0, 3.0, 1.0]


def test_unit_state_survives_a_restart_from_the_records() -> None:
    """Open units and seen markers are rebuilt from the changelog records, so a unit's
    request after a restart is still aggregated (open) or excluded (frozen)."""
    state, log, store = JoinState(config=CONFIG), JoinLog(), {}

    def persist() -> None:
        state.expire()
        records, dead = log.write(state, state.take_changes(), {})
        store.update(records)
        for seq in dead:
            store.pop(seq, None)

    state.add_prediction(pred("a", ts_ms=1_100, unit_id="old"))
    state.add_outcome(outcome("x", ts_ms=1_100))
    persist()
    state.add_prediction(pred("b", ts_ms=7_100, unit_id="new"))
    state.add_outcome(outcome("y", ts_ms=7_100))
    persist()
    assert set(state.units) and state.rollouts["r1"].seen
    again, _, _ = restore(store.values(), CONFIG)
    assert again.units == state.units and again.rollouts["r1"].seen == state.rollouts["r1"].seen
    again.add_prediction(pred("c", ts_ms=7_200, unit_id="new", latency_ms=30.0))
    again.add_prediction(pred("d", ts_ms=7_300, unit_id="old"))
    assert again.cells[("r1", 7_000, "all", "canary")].sums["latency_ms"][:2] == [1, 40.0]
    assert again.counters["unit_repeat_requests"] == 1


@pytest.mark.parametrize("freeze_apart", [True, False])
def test_a_forgotten_rollouts_seen_markers_stay_forgotten_after_a_restart(
        freeze_apart: bool) -> None:
    """A rollout forgotten with its last cell loses its seen markers; when it opens again,
    a restart from the surviving records (one still holding the old marker, or the unit's
    old open state) does not bring them back: the unit enters the new rollout, as live."""
    state, log, store = JoinState(config=CONFIG), JoinLog(), {}

    def persist() -> None:
        state.expire()
        records, dead = log.write(state, state.take_changes(), {})
        store.update(records)
        for seq in dead:
            store.pop(seq, None)

    def clock(ts_ms: int) -> None:  # move both watermarks with another rollout's events
        state.add_prediction(pred(f"p{ts_ms}", ts_ms=ts_ms, rollout_id="r2"))
        state.add_outcome(outcome(f"p{ts_ms}", ts_ms=ts_ms, rollout_id="r2"))

    state.add_prediction(pred("a", ts_ms=1_100, unit_id="u"))
    state.add_outcome(outcome("a", ts_ms=1_100))
    state.add_outcome(outcome("w", ts_ms=7_000, rollout_id="r3"))  # keeps this record alive
    persist()
    if freeze_apart:  # the unit freezes (7 000) in one batch, r1 is forgotten (7 500) later
        clock(7_000)
        persist()
        assert state.rollouts["r1"].seen
    clock(7_600)
    persist()
    assert "r1" not in state.rollouts
    state.add_prediction(pred("b", ts_ms=7_600))  # r1 opens again, with no seen marker
    persist()
    again, _, _ = restore(store.values(), CONFIG)
    assert again.rollouts["r1"].seen == state.rollouts["r1"].seen == set()
    for join in (state, again):
        join.add_prediction(pred("c", ts_ms=7_700, unit_id="u"))
        assert join.counters["unit_repeat_requests"] == 0


def test_linearized_sums_give_the_delta_method_variance() -> None:
    """The pseudo-sums' variance of the mean equals the delta-method variance of Σy/Σm
    computed from the units directly, and one request per unit gives (Σy, Σy²) unchanged."""
    rng = np.random.default_rng(3)
    m = rng.integers(1, 8, size=500).astype(float)
    y = rng.binomial(m.astype(int), 0.3).astype(float)
    n = float(m.size)
    sum_z, sum_z2 = linearize(np.array(n), np.array(y.sum()), np.array((y * y).sum()),
                              np.array((m - 1).sum()), np.array((m * m - 1).sum()),
                              np.array((y * (m - 1)).sum()))
    r = y.sum() / m.sum()
    var_mean = (sum_z2 - sum_z**2 / n) / (n - 1) / n
    mu_m = m.mean()
    cov = np.cov(np.vstack([y, m]))
    delta = (cov[0, 0] / mu_m**2 - 2 * r * cov[0, 1] / mu_m**2 + r**2 * cov[1, 1] / mu_m**2) / n
    assert abs(float(sum_z) / n - r) < 1e-12
    assert abs(float(var_mean) / delta - 1) < 1e-9
    plain = linearize(np.array(3.0), np.array(2.0), np.array(2.0), *np.zeros((3, 1)))
    assert (float(plain[0][0]), float(plain[1][0])) == (2.0, 2.0)


def test_the_seen_set_answers_membership_exactly_across_merges() -> None:
    """Hashes merged into the sorted array (past RECENT_MAX) or still in the recent set
    are members; others are not, whatever the bitmap's false positives."""
    import random

    from streammon.join.units import RECENT_MAX, SeenSet

    rng = random.Random(1)
    hashes = [rng.getrandbits(63) for _ in range(RECENT_MAX + 30_000)]
    seen = SeenSet()
    for h in hashes[:RECENT_MAX + 10_000]:
        seen.add(h)
    assert all(h in seen for h in hashes[:RECENT_MAX + 10_000])
    assert not any(h in seen for h in hashes[RECENT_MAX + 10_000:])
    assert len(seen) == RECENT_MAX + 10_000 and seen == set(hashes[:RECENT_MAX + 10_000])


def test_a_units_covariate_sums_are_per_unit_by_its_first_requests_covariate() -> None:
    """CUPED with units: label:x counts the unit once with x_u (its first request's
    covariate), label:xy holds x_u · y_u for the unit's total y_u, whatever the order of
    outcomes, a later request's own covariate, or a restart from the records in between.
    Per request instead, a unit with more requests in one arm would move Σx/n by arm."""
    def run(restart: bool) -> list[float]:
        state, log = JoinState(config=CONFIG), JoinLog()
        state.add_outcome(outcome("b", ts_ms=1_150, label=1.0))  # before its prediction
        state.add_prediction(pred("a", ts_ms=1_100, unit_id="u", covariate=0.5))
        state.add_prediction(pred("b", ts_ms=1_200, unit_id="u", covariate=0.9))
        state.add_prediction(pred("c", ts_ms=1_300, unit_id="u", covariate=0.1))
        if restart:
            records, _ = log.write(state, state.take_changes(), {})
            state, _, _ = restore([raw for _, raw in records], CONFIG)
        state.add_outcome(outcome("a", ts_ms=1_400, label=1.0))
        state.add_outcome(outcome("c", ts_ms=1_500, label=0.0))
        sums = state.cells[CANARY].sums
        assert sums["label"][:3] == [1, 2.0, 4.0]  # one unit, y_u = 2 over m_u = 3
        return sums["label:x"][:3] + sums["label:xy"][:3]

    assert run(restart=False) == [1, 0.5, 0.25, 1, 1.0, 1.0]  # x_u y_u = 0.5 · 2
    assert run(restart=True) == run(restart=False)


def test_a_unit_whose_first_request_has_no_covariate_counts_as_x_zero() -> None:
    state = JoinState(config=CONFIG)
    state.add_prediction(pred("a", ts_ms=1_100, unit_id="u"))
    state.add_prediction(pred("b", ts_ms=1_200, unit_id="u", covariate=0.9))
    state.add_outcome(outcome("b", ts_ms=1_400, label=1.0))
    sums = state.cells[CANARY].sums
    assert sums["label"][:3] == [1, 1.0, 1.0]
    assert "label:x" not in sums and "label:xy" not in sums


def test_records_of_builds_without_unit_covariates_still_restore() -> None:
    """A record written before ``unit_covariates`` existed restores its open units (with
    no covariate: x = 0), so an upgrade needs no migration of the changelog."""
    import json

    state, log = JoinState(config=CONFIG), JoinLog()
    state.add_prediction(pred("a", ts_ms=1_100, unit_id="u", covariate=0.5))
    records, _ = log.write(state, state.take_changes(), {})
    old = []
    for _, raw in records:
        doc = json.loads(raw)
        assert doc.pop("unit_covariates") == [[next(iter(state.units)), 0.5]]
        old.append(json.dumps(doc).encode())
    restored, _, _ = restore(old, CONFIG)
    assert [u.x for u in restored.units.values()] == [None]
    restored.add_outcome(outcome("a", ts_ms=1_400, label=1.0))
    assert restored.cells[CANARY].sums["label"][:3] == [1, 1.0, 1.0]
    assert "label:x" not in restored.cells[CANARY].sums
