"""Unit tests for signed, sequenced control commands (no I/O)."""

from __future__ import annotations

import msgspec
import pytest

from streammon import events
from streammon.control.commands import (
    check_command,
    make_command,
    route_state_for,
    sign,
    verify,
    weights_for,
)
from streammon.errors import CommandError
from streammon.events import Action
from tests.helpers import DECIDER_KEY, DEV_KEYS, OPERATOR_KEY, SERVING_NODE_KEY

KEY = DECIDER_KEY


def _cmd(**overrides: object) -> events.Command:
    base: dict[str, object] = {
        "rollout_id": "r1",
        "seq": 3,
        "action": "step",
        "baseline": "v1",
        "candidate": "v2",
        "fraction": 0.1,
        "now_ms": 1_700_000_000_000,
        "key": KEY,
    }
    base.update(overrides)
    return make_command(**base)


def test_sign_verify_round_trip_through_the_wire() -> None:
    """A signed command still verifies after encode -> decode, as the actuator sees it."""
    cmd = _cmd()
    assert len(cmd.sig) == 128  # Ed25519: 64 bytes
    verify(events.decode(events.Command, events.encode(cmd)), DEV_KEYS)


def test_integer_fraction_signs_the_same_as_float() -> None:
    """A sender's int 0 and the receiver's decoded 0.0 produce the same signature."""
    cmd = msgspec.structs.replace(_cmd(key=None), weights={"v1": 1}, fraction=0)
    signed = sign(cmd, KEY)
    verify(events.decode(events.Command, events.encode(signed)), DEV_KEYS)


def test_wrong_key_is_rejected() -> None:
    """A command signed by an untrusted key is a forgery, whatever issued_by it claims."""
    with pytest.raises(CommandError, match="forged"):
        verify(_cmd(key=SERVING_NODE_KEY), DEV_KEYS)
    claimed = msgspec.structs.replace(_cmd(key=SERVING_NODE_KEY), issued_by="decider")
    with pytest.raises(CommandError, match="forged"):
        verify(claimed, DEV_KEYS)


@pytest.mark.parametrize(
    "field, value",
    [("seq", 4), ("fraction", 0.9), ("weights", {"v2": 1.0}), ("action", "promote")],
)
def test_tampered_field_is_rejected(field: str, value: object) -> None:
    """Changing any field after signing, the sequence number included, breaks the signature."""
    tampered = msgspec.structs.replace(_cmd(), **{field: value})
    with pytest.raises(CommandError):
        verify(tampered, DEV_KEYS)


def test_unsigned_command_is_rejected() -> None:
    """A command without a signature never verifies."""
    with pytest.raises(CommandError, match="unsigned"):
        verify(_cmd(key=None), DEV_KEYS)


def test_issued_by_is_bound_to_the_signing_key() -> None:
    """Signing sets issued_by to the signer's principal; another principal's name fails."""
    cmd = _cmd(key=OPERATOR_KEY, issued_by="decider")
    assert cmd.issued_by == "operator"
    verify(cmd, DEV_KEYS)
    with pytest.raises(CommandError):
        verify(msgspec.structs.replace(cmd, issued_by="decider"), DEV_KEYS)


@pytest.mark.parametrize(
    "fraction, expected",
    [
        (0.0, {"v1": 1.0}),
        (1.0, {"v2": 1.0}),
        (0.25, {"v1": 0.75, "v2": 0.25}),
    ],
)
def test_weights_for_edges(fraction: float, expected: dict[str, float]) -> None:
    """Fraction 0 is all baseline, 1 is all candidate, and in between splits 1-f / f."""
    assert weights_for("v1", "v2", fraction) == expected


def test_weights_for_same_version_is_all_baseline() -> None:
    """A rollout of a version onto itself routes everything to that version."""
    assert weights_for("v1", "v1", 0.5) == {"v1": 1.0}


@pytest.mark.parametrize("fraction", [-0.1, 1.5, float("nan")])
def test_weights_for_rejects_out_of_range(fraction: float) -> None:
    """A fraction outside [0, 1] is refused."""
    with pytest.raises(CommandError, match="fraction"):
        weights_for("v1", "v2", fraction)


def test_rollback_and_promote_force_their_fraction() -> None:
    """Rollback routes 100% to the baseline and promote 100% to the candidate."""
    assert _cmd(action="rollback", fraction=0.3).weights == {"v1": 1.0}
    assert _cmd(action="promote", fraction=0.3).weights == {"v2": 1.0}


def test_check_command_rejects_bad_weights() -> None:
    """Weights that do not sum to 1, name unknown versions or keep canary on rollback fail."""
    good = _cmd(key=None)
    check_command(good)
    for weights in ({"v1": 0.5}, {"v1": 0.5, "v9": 0.5}, {"v1": -1.0, "v2": 2.0}):
        with pytest.raises(CommandError):
            check_command(msgspec.structs.replace(good, weights=weights))
    rollback = msgspec.structs.replace(good, action="rollback")
    with pytest.raises(CommandError, match="rollback"):
        check_command(rollback)


@pytest.mark.parametrize(
    "action, phase",
    [
        ("start", "running"),
        ("step", "running"),
        ("resume", "running"),
        ("hold", "held"),
        ("promote", "promoted"),
        ("rollback", "rolled_back"),
    ],
)
def test_route_state_phase_follows_action(action: Action, phase: str) -> None:
    """Each action maps to the phase the route state records."""
    state = route_state_for(_cmd(action=action))
    assert state.phase == phase
    assert state.seq == 3


def test_seq_verdict_tells_duplicates_from_conflicts() -> None:
    """Same seq and signature is a duplicate; same seq with another command is a conflict."""
    from streammon.control.commands import seq_verdict

    common = {"rollout_id": "r1", "baseline": "v1", "candidate": "v2", "now_ms": 0,
              "key": KEY}
    held = route_state_for(make_command(seq=5, action="step", fraction=0.2, **common))
    same = make_command(seq=5, action="step", fraction=0.2, **common)
    rival = make_command(seq=5, action="rollback", fraction=0.0, **common)
    assert seq_verdict(held, same) == "duplicate"
    assert seq_verdict(held, rival) == "conflict"
    assert seq_verdict(held, make_command(seq=4, action="step", fraction=0.1, **common)) == "stale"
    assert seq_verdict(held, make_command(seq=6, action="step", fraction=0.1, **common)) == "newer"
    assert seq_verdict(None, rival) == "newer"


def test_every_action_has_exactly_one_phase() -> None:
    """The one action -> phase table covers every command action and only those."""
    from typing import get_args

    from streammon.control.commands import PHASES, Phase
    from streammon.events import Action

    assert set(PHASES) == set(get_args(Action))
    assert set(PHASES.values()) == set(get_args(Phase))
