"""PURE: signed, sequenced control commands, the route state they produce, sticky assignment.

A :class:`~streammon.events.Command` is ordered per rollout by ``seq`` and authenticated
by ``sig``: a hex HMAC-SHA256 over the command's canonical JSON (keys sorted, ``sig``
set to ``""``), so the signature covers every field, the sequence number included.
The actuator and routers apply a command only if its signature verifies and its
``seq`` is newer than what they hold; replaying the control topic is therefore safe.

Redis layout (the shared contract; written by ``actuator.py``, read by ``router.py``):

- ``streammon:rollout:{rollout_id}`` -> JSON :class:`RouteState` (``rollout_id``, ``seq``,
  ``action``, ``weights`` {version: fraction}, ``baseline``, ``candidate``, ``fraction``,
  ``stage``, ``phase`` running|held|promoted|rolled_back, ``ts_ms``, ``reason``,
  ``issued_by``, ``sig`` of the command applied).
- ``streammon:rollout:{rollout_id}:log`` -> list of the applied route states, oldest first.
- channel ``streammon:changes`` -> the rollout_id, published after every applied change.
- ``streammon:pin:{version}``, ``streammon:pins`` -> pinned checkpoints (``registry.py``).
- hash ``streammon:actuator:stats`` -> actuator counters.

:func:`assign`: a unit id hashes (blake2b, salted with the rollout id) to a uniform ``u``
in [0, 1); the unit goes to the candidate iff ``u`` is below the candidate's weight, so a
unit in the canary at 5% stays in it at 10%.
"""

from __future__ import annotations

import hashlib
import hmac
import math
from typing import Literal

import msgspec

from streammon.errors import CommandError
from streammon.events import Action, Arm, Command, RolloutSpec

ROUTE_KEY_PREFIX = "streammon:rollout:"
CHANGES_CHANNEL = "streammon:changes"
WEIGHTS_TOLERANCE = 1e-6

Phase = Literal["running", "held", "promoted", "rolled_back"]
SeqVerdict = Literal["newer", "duplicate", "conflict", "stale"]
PHASES: dict[str, Phase] = {
    "start": "running",
    "step": "running",
    "resume": "running",
    "hold": "held",
    "promote": "promoted",
    "rollback": "rolled_back",
}

_UNIT_SCALE = float(1 << 64)
_CANONICAL = msgspec.json.Encoder(order="sorted")
_NORMALISE = msgspec.json.Decoder(Command)


class RouteState(msgspec.Struct, frozen=True, kw_only=True):
    """Where a rollout's traffic goes now: the value of ``streammon:rollout:{id}``."""

    rollout_id: str
    seq: int
    action: Action
    weights: dict[str, float]
    baseline: str
    candidate: str
    fraction: float
    stage: int = 0
    phase: Phase = "running"
    ts_ms: int = 0
    reason: str = ""
    issued_by: str = ""
    sig: str = ""

    @property
    def candidate_weight(self) -> float:
        """The share of traffic the candidate gets (0.0 when it has none)."""
        return self.weights.get(self.candidate, 0.0) if self.candidate != self.baseline else 0.0


def route_key(rollout_id: str) -> str:
    """Return the Redis key holding a rollout's route state."""
    return f"{ROUTE_KEY_PREFIX}{rollout_id}"


def canonical_bytes(cmd: Command) -> bytes:
    """Return the deterministic JSON that the signature covers (sorted keys, ``sig=""``).

    The command is first round-tripped through the typed decoder, so a sender's ``0``
    and a receiver's ``0.0`` in a float field sign the same bytes.
    """
    unsigned = _NORMALISE.decode(_CANONICAL.encode(msgspec.structs.replace(cmd, sig="")))
    return _CANONICAL.encode(unsigned)


def _mac(cmd: Command, key: bytes) -> str:
    return hmac.new(key, canonical_bytes(cmd), hashlib.sha256).hexdigest()


def sign(cmd: Command, key: bytes) -> Command:
    """Return a copy of ``cmd`` whose ``sig`` is the HMAC-SHA256 of its canonical JSON."""
    if not key:
        raise CommandError("cannot sign with an empty key - set Settings.hmac_key")
    return msgspec.structs.replace(cmd, sig=_mac(cmd, key))


def verify(cmd: Command, key: bytes) -> None:
    """Raise CommandError unless ``cmd`` carries a valid signature under ``key``."""
    if not cmd.sig:
        raise CommandError(f"unsigned command {cmd.rollout_id}#{cmd.seq} - at `$.sig`")
    if not hmac.compare_digest(cmd.sig, _mac(cmd, key)):
        raise CommandError(f"forged or tampered command {cmd.rollout_id}#{cmd.seq} - at `$.sig`")


def signature_counter(cmd: Command) -> str:
    """Return the counter a failed :func:`verify` bumps: unsigned and forged are told apart."""
    return "rejected_unsigned" if not cmd.sig else "rejected_signature"


def weights_for(baseline: str, candidate: str, fraction: float) -> dict[str, float]:
    """Return ``{baseline: 1 - f, candidate: f}``, leaving out a version with zero weight."""
    if not (math.isfinite(fraction) and 0.0 <= fraction <= 1.0):
        raise CommandError(f"fraction must be in [0, 1], got {fraction!r} - at `$.fraction`")
    if baseline == candidate or fraction == 0.0:
        return {baseline: 1.0}
    if fraction == 1.0:
        return {candidate: 1.0}
    return {baseline: 1.0 - fraction, candidate: fraction}


def check_command(cmd: Command) -> None:
    """Raise CommandError if the weights are not a distribution or contradict the action."""
    if not cmd.weights:
        raise CommandError("weights are empty - at `$.weights`")
    if any(not math.isfinite(w) or w < 0.0 for w in cmd.weights.values()):
        raise CommandError("weights must be finite and >= 0 - at `$.weights`")
    if abs(sum(cmd.weights.values()) - 1.0) > WEIGHTS_TOLERANCE:
        raise CommandError(f"weights sum to {sum(cmd.weights.values())}, not 1 - at `$.weights`")
    unknown = set(cmd.weights) - {cmd.baseline, cmd.candidate}
    if unknown:
        raise CommandError(f"weights name unknown versions {sorted(unknown)} - at `$.weights`")
    if cmd.action == "rollback" and cmd.weights.get(cmd.baseline, 0.0) < 1.0:
        raise CommandError("a rollback must route 100% to the baseline - at `$.weights`")


def make_command(
    *,
    rollout_id: str,
    seq: int,
    action: Action,
    baseline: str,
    candidate: str,
    fraction: float,
    now_ms: int,
    key: bytes | None = None,
    stage: int = 0,
    reason: str = "",
    issued_by: str = "decider",
    spec: RolloutSpec | None = None,
) -> Command:
    """Build a command stamped with ``now_ms``; signed when ``key`` is given.

    ``rollback`` always routes 100% to the baseline (fraction 0) and ``promote`` 100% to
    the candidate (fraction 1), whatever ``fraction`` says.
    """
    if action == "rollback":
        fraction = 0.0
    elif action == "promote":
        fraction = 1.0
    cmd = Command(
        rollout_id=rollout_id,
        seq=seq,
        action=action,
        weights=weights_for(baseline, candidate, fraction),
        baseline=baseline,
        candidate=candidate,
        fraction=float(fraction),
        stage=stage,
        reason=reason,
        issued_by=issued_by,
        ts_ms=now_ms,
        spec=spec,
    )
    return sign(cmd, key) if key is not None else cmd


def seq_verdict(held: RouteState | None, cmd: Command) -> SeqVerdict:
    """Compare ``cmd`` with the held state, as the actuator's Lua script does.

    ``conflict`` is an equal seq carrying another command: two issuers (decider and
    operator) raced for one number and the first in partition order won.
    """
    if held is None or cmd.seq > held.seq:
        return "newer"
    if cmd.seq < held.seq:
        return "stale"
    return "duplicate" if held.sig in ("", cmd.sig) else "conflict"


def route_state_for(cmd: Command) -> RouteState:
    """Return the route state that applying ``cmd`` produces."""
    return RouteState(
        rollout_id=cmd.rollout_id,
        seq=cmd.seq,
        action=cmd.action,
        weights=dict(cmd.weights),
        baseline=cmd.baseline,
        candidate=cmd.candidate,
        fraction=cmd.fraction,
        stage=cmd.stage,
        phase=PHASES[cmd.action],
        ts_ms=cmd.ts_ms,
        reason=cmd.reason,
        issued_by=cmd.issued_by,
        sig=cmd.sig,
    )


class Assignment(msgspec.Struct, frozen=True, kw_only=True):
    """Where one unit goes: the version, its arm, and the route state's seq (None: default)."""

    version: str
    arm: Arm
    weights_seq: int | None


def unit_position(unit_id: str, rollout_id: str = "") -> float:
    """Return a uniform, stable u in [0, 1) for ``unit_id`` within ``rollout_id``."""
    digest = hashlib.blake2b(f"{rollout_id}\x00{unit_id}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big") / _UNIT_SCALE


def assign(unit_id: str, state: RouteState | None, *, default_version: str) -> Assignment:
    """Return the sticky assignment of ``unit_id`` under ``state`` (None: default baseline)."""
    if state is None:
        return Assignment(version=default_version, arm="baseline", weights_seq=None)
    if unit_position(unit_id, state.rollout_id) < state.candidate_weight:
        return Assignment(version=state.candidate, arm="canary", weights_seq=state.seq)
    return Assignment(version=state.baseline, arm="baseline", weights_seq=state.seq)
