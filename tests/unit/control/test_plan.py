"""The actuator's sequence authority (control.commands.plan) and the decider's sync from it."""

from __future__ import annotations

import msgspec
import numpy as np
import pytest

from streammon.control.commands import make_command, plan, route_state_for
from streammon.decide.progress import RolloutState, sync_applied
from streammon.events import Action, MetricSpecWire, RolloutSpec
from tests.helpers import DECIDER_KEY, OPERATOR_KEY

NOW = 1_700_000_000_000


def _cmd(seq: int, action: Action, *, key: object = DECIDER_KEY, epoch: str = "e1",
         now_ms: int = NOW, fraction: float = 0.2) -> object:
    return make_command(rollout_id="r1", seq=seq, action=action, baseline="v1",
                        candidate="v2", fraction=fraction, now_ms=now_ms,
                        key=key, epoch=epoch)  # type: ignore[arg-type]


def _applied(*cmds: object) -> object:
    """Apply proposals in order through plan(); return the final state."""
    held = None
    for cmd in cmds:
        _verdict, new = plan(held, cmd, NOW)  # type: ignore[arg-type]
        if new is not None:
            held = new
    return held


@pytest.mark.parametrize("order", ["operator_first", "decider_first"])
def test_operator_promote_racing_a_decider_rollback_ends_rolled_back(order: str) -> None:
    """Both proposed on seq 2 (start at 1): in either arrival order the rollout ends rolled
    back, the rollback taking the next free seq."""
    start = _cmd(1, "start")
    promote = _cmd(2, "promote", key=OPERATOR_KEY)
    rollback = _cmd(2, "rollback", fraction=0.0)
    pair = (promote, rollback) if order == "operator_first" else (rollback, promote)
    final = _applied(start, *pair)
    assert final.phase == "rolled_back" and final.weights == {"v1": 1.0}  # type: ignore[attr-defined]
    assert final.seq == (3 if order == "operator_first" else 2)  # type: ignore[attr-defined]


def test_operator_hold_is_never_stepped_over_by_a_stale_decider_step() -> None:
    """A decider step proposed before it saw the operator's hold is a conflict."""
    held = _applied(_cmd(1, "start"), _cmd(2, "hold", key=OPERATOR_KEY))
    verdict, new = plan(held, _cmd(2, "step", fraction=0.5), NOW)  # type: ignore[arg-type]
    assert verdict == "conflict" and new is None


def test_resume_is_refused_after_a_rollback_and_a_rollback_after_a_promote_applies() -> None:
    """A rolled-back rollout stays rolled back; a promoted one can still be rolled back."""
    rolled = _applied(_cmd(1, "start"), _cmd(2, "rollback", fraction=0.0))
    assert plan(rolled, _cmd(3, "resume", key=OPERATOR_KEY), NOW)[0] == "rejected_terminal"  # type: ignore[arg-type]
    assert plan(rolled, _cmd(3, "step"), NOW)[0] == "rejected_terminal"  # type: ignore[arg-type]
    promoted = _applied(_cmd(1, "start"), _cmd(2, "promote", key=OPERATOR_KEY))
    verdict, new = plan(promoted, _cmd(2, "rollback", fraction=0.0), NOW)  # type: ignore[arg-type]
    assert verdict == "apply" and new is not None and new.phase == "rolled_back"


def test_expired_other_epoch_and_stateless_commands_are_refused() -> None:
    """Replays: an expired command, one of another incarnation, and any non-start command
    when no applied state exists (Redis lost its data) never apply."""
    held = _applied(_cmd(1, "start"))
    assert plan(held, _cmd(2, "step", now_ms=NOW - 11 * 60_000), NOW)[0] == "rejected_expired"  # type: ignore[arg-type]
    assert plan(held, _cmd(2, "step", epoch="old"), NOW)[0] == "rejected_epoch"  # type: ignore[arg-type]
    assert plan(None, _cmd(5, "promote"), NOW)[0] == "rejected_unknown"  # type: ignore[arg-type]
    assert plan(None, _cmd(5, "rollback", fraction=0.0), NOW)[0] == "rejected_unknown"  # type: ignore[arg-type]


def _spec() -> RolloutSpec:
    return RolloutSpec(rollout_id="r1", baseline="v1", candidate="v2",
                       metrics=[MetricSpecWire(name="label", kind="binary",
                                               bad_direction="decrease")])


def test_decider_learns_the_applied_hold_not_its_own_proposal() -> None:
    """The decider proposed a step on seq 2; the operator's hold took seq 2: after syncing
    from the applied state the decider is held at the old stage and proposes nothing."""
    state = RolloutState(spec=_spec(), origin_ms=0, seq=2, stage=1, epoch="e1",
                         proposed_ms=NOW)
    hold = msgspec.structs.replace(route_state_for(_cmd(2, "hold", key=OPERATOR_KEY)),  # type: ignore[arg-type]
                                   stage=0)
    sync_applied(state, hold, NOW + 1)
    assert (state.seq, state.phase, state.stage) == (2, "held", 0)


def test_decider_waits_for_a_pending_proposal_then_gives_it_up() -> None:
    """An applied state behind the decider's proposal is ignored for a while (in flight),
    then taken (the proposal was refused)."""
    state = RolloutState(spec=_spec(), origin_ms=0, seq=3, stage=2, epoch="e1",
                         proposed_ms=NOW)
    applied = msgspec.structs.replace(route_state_for(_cmd(2, "step")), stage=1)  # type: ignore[arg-type]
    sync_applied(state, applied, NOW + 1_000)
    assert state.seq == 3
    sync_applied(state, applied, NOW + 60_000)
    assert (state.seq, state.stage) == (2, 1)


def test_a_step_applied_late_is_dated_when_the_actuator_applied_it() -> None:
    """A step the decider proposed at t but the actuator applied 6 s later (it was
    restarting): until it applies, and after, the windows before the switch are expected at
    the old stage's split, never at the new one (no false sample-ratio mismatch)."""
    from streammon.control.commands import sign_state, verify_state
    from streammon.decide.progress import apply_command, intended_fractions
    from tests.helpers import ACTUATOR_KEY, DEV_KEYS

    spec = msgspec.structs.replace(_spec(), window_ms=1000, grace_ms=0)
    start = route_state_for(_cmd(1, "start", now_ms=NOW))  # type: ignore[arg-type]
    state = RolloutState(spec=spec, origin_ms=NOW, seq=1, stage=0, epoch="e1",
                         stage_changes=[(NOW, 0)])
    step = make_command(rollout_id="r1", seq=2, action="step", baseline="v1", candidate="v2",
                        fraction=0.4, stage=1, now_ms=NOW + 10_000, key=DECIDER_KEY,
                        epoch="e1")
    apply_command(state, step)
    state.proposed_ms = NOW + 10_000
    sync_applied(state, start, NOW + 13_000)  # still pending: routers serve stage 0
    assert state.stage_changes[-1] == (NOW + 13_000, 1)
    late = msgspec.structs.replace(route_state_for(step), seq=2, applied_ms=NOW + 16_000)
    signed = sign_state(late, ACTUATOR_KEY)
    verify_state(signed, DEV_KEYS)  # applied_ms is covered by the actuator's signature
    sync_applied(state, signed, NOW + 17_000)
    assert state.stage_changes[-1] == (NOW + 16_000, 1)
    shares = intended_fractions(state, 20)
    stage0 = shares[1:15]
    assert (stage0[~np.isnan(stage0)] == shares[1]).all() and shares[1] < shares[19]
    assert np.isnan(shares[16]) and shares[18] == shares[19]


def test_a_step_that_never_applied_leaves_no_stage_change_behind() -> None:
    """A step refused by the actuator (given up after the pending timeout) is removed from the
    stage changes: the split expected afterwards is the applied stage's."""
    from streammon.decide.progress import apply_command

    state = RolloutState(spec=_spec(), origin_ms=NOW, seq=1, stage=0, epoch="e1",
                         stage_changes=[(NOW, 0)])
    step = make_command(rollout_id="r1", seq=2, action="step", baseline="v1", candidate="v2",
                        fraction=0.4, stage=1, now_ms=NOW + 10_000, key=DECIDER_KEY,
                        epoch="e1")
    apply_command(state, step)
    state.proposed_ms = NOW + 10_000
    hold = msgspec.structs.replace(route_state_for(_cmd(2, "hold", key=OPERATOR_KEY)),  # type: ignore[arg-type]
                                   stage=0, applied_ms=NOW + 11_000)
    sync_applied(state, hold, NOW + 60_000)
    assert (state.phase, state.stage, state.stage_changes) == ("held", 0, [(NOW, 0)])


def test_a_state_signed_before_applied_ms_existed_still_verifies() -> None:
    """The actuator's signature over a state without applied_ms (written by an older
    actuator) still verifies after the field was added."""
    from streammon.control.commands import state_bytes, verify_state
    from tests.helpers import ACTUATOR_KEY, DEV_KEYS

    state = route_state_for(_cmd(1, "start"))  # type: ignore[arg-type]
    assert b"applied_ms" not in state_bytes(state)
    legacy = msgspec.structs.replace(state, state_sig=ACTUATOR_KEY.sign(state_bytes(state)))
    verify_state(legacy, DEV_KEYS)
    tampered = msgspec.structs.replace(legacy, applied_ms=5)
    from streammon.errors import CommandError

    with pytest.raises(CommandError):
        verify_state(tampered, DEV_KEYS)


def test_a_resume_learnt_from_the_applied_state_restarts_the_sample_ratio_check() -> None:
    """The live decider learns an operator's resume from the applied route state, not from
    the control topic: the sample-ratio check then starts afresh at the resume (as
    apply_command does in the event-level backtest), so windows from before the hold never
    halt the resumed rollout again."""
    state = RolloutState(spec=_spec(), origin_ms=0, seq=3, stage=1, epoch="e1",
                         phase="held", windows_closed=14, srm_start_window=4)
    resume = msgspec.structs.replace(route_state_for(_cmd(4, "resume", key=OPERATOR_KEY)),  # type: ignore[arg-type]
                                     stage=1)
    sync_applied(state, resume, NOW + 1)
    assert (state.seq, state.phase, state.srm_start_window) == (4, "running", 14)
    sync_applied(state, resume, NOW + 2)  # the same applied state again changes nothing
    assert state.srm_start_window == 14


def test_a_stage_change_learnt_from_the_applied_state_restarts_the_stage_checks() -> None:
    """An operator's step the decider did not propose, learnt from the applied state, starts
    the new stage's windows and its exact sample-ratio check, as the decider's own step
    does; a proposal of ours given up (the routers kept the old stage) restarts no
    sample-ratio check, since the split the routers serve never changed."""
    state = RolloutState(spec=_spec(), origin_ms=0, seq=3, stage=1, epoch="e1",
                         windows_closed=12, stage_start_window=6, srm_start_window=6,
                         stage_changes=[(0, 0), (NOW, 1)])
    step = msgspec.structs.replace(route_state_for(_cmd(4, "step", key=OPERATOR_KEY)),  # type: ignore[arg-type]
                                   stage=2)
    sync_applied(state, step, NOW + 1)
    assert (state.stage, state.stage_start_window, state.srm_start_window) == (2, 12, 12)
    assert state.stage_changes[-1][1] == 2
    mine = RolloutState(spec=_spec(), origin_ms=0, seq=4, stage=2, epoch="e1",
                        windows_closed=12, stage_start_window=12, srm_start_window=6,
                        stage_changes=[(0, 0), (NOW, 1), (NOW + 5, 2)], proposed_ms=NOW)
    kept = msgspec.structs.replace(route_state_for(_cmd(3, "step")), stage=1)  # type: ignore[arg-type]
    sync_applied(mine, kept, NOW + 60_000)
    assert (mine.seq, mine.stage, mine.srm_start_window) == (3, 1, 6)
    assert mine.stage_changes[-1] == (NOW, 1)
