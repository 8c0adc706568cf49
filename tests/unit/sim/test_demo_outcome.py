"""The demo's verdict on itself: right only when the right thing happened for the right reason."""

import pytest

from streammon.sim.demo_timeline import judge_outcome


@pytest.mark.parametrize(("regression_at_s", "phase", "decision_at_s", "evidence_end_s", "ok"), [
    (20.0, "rolled_back", 24.0, 22.0, True),
    (20.0, "rolled_back", 7.9, 6.0, False),     # the seed's first fresh-clone run
    (20.0, "rolled_back", 20.5, 19.0, False),   # sent after, decided on earlier windows
    (20.0, "promoted", 60.0, 58.0, False),
    (20.0, None, None, None, False),
    (None, "promoted", 70.0, 68.0, True),
    (None, "rolled_back", 30.0, 28.0, False),
    (20.0, "rolled_back", 3.0, None, False),    # an operator's rollback, no decider window
])
def test_judge_outcome(regression_at_s: float | None, phase: str | None,
                       decision_at_s: float | None, evidence_end_s: float | None,
                       ok: bool) -> None:
    """Rollbacks before the regression, promotions of it, and healthy rollbacks are wrong."""
    check = judge_outcome(regression_at_s=regression_at_s, phase=phase,
                          decision_at_s=decision_at_s, evidence_end_s=evidence_end_s)
    assert check.ok is ok, check.message
    assert check.message.startswith("WRONG") or ok or phase is None
