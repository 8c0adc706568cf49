"""One seed of ``make chaos`` (scripts/chaos.py): the whole loop on the durable stack while the
worker, the actuator and the broker are SIGKILLed and Redis restarts (about a minute; slow)."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "scripts"))

import chaos


@pytest.mark.slow
def test_one_chaos_seed_rolls_back_the_regression_and_counts_exactly(
    capsys: pytest.CaptureFixture[str],
) -> None:
    """Seed 0's faults leave the regression rolled back by the decider, the healthy rollout
    not rolled back, cohort counts equal to the acknowledged events, and the route logs equal
    to the control topic replayed through the actuator's rule."""
    code = chaos.main(["--seeds", "1", "--first-seed", "0"])
    out = capsys.readouterr().out
    assert code == 0, out
    assert "PASS: 1 seeds" in out and "0 lost, 0 double-applied, 0 extra" in out
