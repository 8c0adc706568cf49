"""PURE: signed control commands, the signed route state they produce, sticky assignment.

A :class:`~streammon.events.Command` is a *proposal* signed by its principal
(``issued_by``) with Ed25519 (:mod:`streammon.control.keys`): ``sig`` covers the command's
canonical JSON (keys sorted, ``sig`` set to ``""``), so every field is covered. The
actuator is the one sequence authority: :func:`plan` decides, from the applied route
state, whether a proposal applies and which ``seq`` it gets. A rollback always applies
(unless already rolled back); a step or promote applies only on top of the state its
proposer saw (``cmd.seq == held.seq + 1``), so an operator's hold is never stepped over;
``resume`` applies only to a held rollout. Every command but ``start`` must carry the
rollout's ``epoch`` and an ``expires_ms`` in the future, so a captured command replayed
after Redis lost its data is refused.

The route state the actuator writes is signed by the ``actuator`` principal
(``state_sig``); routers take only route states that verify, so a value written into
Redis by anyone else (say with ``seq`` = 2**53) is ignored by routers and overwritten by
the actuator's next command, which continues from the last authentic state.

Redis layout (the shared contract; written by ``actuator.py``, read by ``router.py``):

- ``streammon:rollout:{rollout_id}`` -> JSON :class:`RouteState` (``rollout_id``, ``seq``,
  ``action``, ``weights`` {version: fraction}, ``baseline``, ``candidate``, ``fraction``,
  ``stage``, ``phase`` running|held|promoted|rolled_back, ``ts_ms``, ``reason``,
  ``issued_by``, ``sig`` of the command applied, ``epoch``, ``state_sig``).
- ``streammon:rollout-log:{rollout_id}`` -> list of the applied route states, oldest first.
- ``streammon:rollout-seen:{rollout_id}`` -> set of the applied commands' ``sig``.
  All three expire ``ROUTE_RETENTION_S`` after the rollout's last change.
- channel ``streammon:changes`` -> the rollout_id, published after every applied change.
- ``streammon:pin:{version}``, ``streammon:pins`` -> pinned checkpoints (``registry.py``).
- hash ``streammon:actuator:stats`` -> actuator counters; hash
  ``streammon:quarantine`` -> rollout_id -> why its stored value was not trusted.

:func:`assign`: a unit id hashes (blake2b, salted with the rollout id) to a uniform ``u``
in [0, 1); the unit goes to the candidate iff ``u`` is below the candidate's weight, so a
unit in the canary at 5% stays in it at 10%.
"""

from __future__ import annotations

import hashlib
import math
from typing import Literal

import msgspec

from streammon.control.keys import ACTUATOR, Keyring, Signer
from streammon.errors import CommandError
from streammon.events import Action, Arm, Command, RolloutSpec

ROUTE_KEY_PREFIX = "streammon:rollout:"
LOG_KEY_PREFIX = "streammon:rollout-log:"
SEEN_KEY_PREFIX = "streammon:rollout-seen:"
ROUTE_RETENTION_S = 30 * 24 * 3600
COMMAND_TTL_MS = 10 * 60 * 1000
CHANGES_CHANNEL = "streammon:changes"
WEIGHTS_TOLERANCE = 1e-6

Phase = Literal["running", "held", "promoted", "rolled_back"]
SeqVerdict = Literal["newer", "duplicate", "conflict", "stale"]
PlanResult = Literal["apply", "duplicate", "conflict", "stale", "rejected_expired",
                  "rejected_epoch", "rejected_unknown", "rejected_terminal"]
PHASES: dict[str, Phase] = {
    "start": "running",
    "step": "running",
    "resume": "running",
    "hold": "held",
    "promote": "promoted",
    "rollback": "rolled_back",
}
FINAL_PHASES: tuple[Phase, ...] = ("promoted", "rolled_back")
"""Phases a rollout never leaves: no command applies after promote or rollback."""

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
    epoch: str = ""
    state_sig: str = ""

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


def log_key(rollout_id: str) -> str:
    """Return the Redis key of a rollout's applied-state log (never a route key)."""
    return f"{LOG_KEY_PREFIX}{rollout_id}"


def seen_key(rollout_id: str) -> str:
    """Return the Redis key of the set of commands applied to a rollout."""
    return f"{SEEN_KEY_PREFIX}{rollout_id}"


def sign(cmd: Command, signer: Signer) -> Command:
    """Return ``cmd`` issued by ``signer``'s principal, signed over its canonical JSON."""
    bound = msgspec.structs.replace(cmd, issued_by=signer.principal, sig="")
    return msgspec.structs.replace(bound, sig=signer.sign(canonical_bytes(bound)))


def verify(cmd: Command, keys: Keyring) -> None:
    """Raise CommandError unless a trusted key of ``cmd.issued_by`` signed ``cmd``.

    The actuator's key signs route states, never commands: a command claiming to be
    from it is refused.
    """
    if not cmd.sig:
        raise CommandError(f"unsigned command {cmd.rollout_id}#{cmd.seq} - at `$.sig`")
    if cmd.issued_by == ACTUATOR:
        raise CommandError("the actuator's key does not sign commands - at `$.issued_by`")
    try:
        keys.verify(cmd.issued_by, canonical_bytes(cmd), cmd.sig)
    except CommandError as exc:
        raise CommandError(f"forged or tampered command {cmd.rollout_id}#{cmd.seq}: {exc}"
                           ) from None


_STATE_CANONICAL = msgspec.json.Decoder(RouteState)


def state_bytes(state: RouteState) -> bytes:
    """Return the canonical JSON a route state's ``state_sig`` covers."""
    unsigned = _STATE_CANONICAL.decode(
        _CANONICAL.encode(msgspec.structs.replace(state, state_sig="")))
    return _CANONICAL.encode(unsigned)


def sign_state(state: RouteState, signer: Signer) -> RouteState:
    """Return ``state`` signed by the actuator's key."""
    return msgspec.structs.replace(state, state_sig=signer.sign(state_bytes(state)))


def verify_state(state: RouteState, keys: Keyring) -> None:
    """Raise CommandError unless the actuator's trusted key signed ``state``."""
    if not state.state_sig:
        raise CommandError(f"unsigned route state {state.rollout_id}#{state.seq}")
    keys.verify(ACTUATOR, state_bytes(state), state.state_sig)


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
    key: Signer | None = None,
    stage: int = 0,
    reason: str = "",
    issued_by: str = "decider",
    spec: RolloutSpec | None = None,
    epoch: str = "",
    ttl_ms: int = COMMAND_TTL_MS,
) -> Command:
    """Build a command stamped with ``now_ms``, expiring ``ttl_ms`` later; signed by ``key``.

    A signed command's ``issued_by`` is the signer's principal. ``rollback`` always routes
    100% to the baseline (fraction 0) and ``promote`` 100% to
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
        epoch=epoch,
        expires_ms=now_ms + ttl_ms,
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
        epoch=cmd.epoch,
    )


def plan(held: RouteState | None, cmd: Command,
         now_ms: int) -> tuple[PlanResult, RouteState | None]:
    """Decide, as the sequence authority, what applying ``cmd`` on ``held`` does.

    Returns ("apply", the unsigned new state with its assigned seq) or a refusal:
    ``duplicate`` (this command is in effect already), ``conflict`` (a step, promote or
    start proposed on a state that has moved on: the proposer must look again),
    ``stale`` (a hold or rollback already in effect), ``rejected_expired``,
    ``rejected_epoch`` (another incarnation of the rollout), ``rejected_unknown`` (no
    applied state: only ``start`` creates one) and ``rejected_terminal`` (the rollout was
    rolled back or promoted: only a rollback may follow a promote, nothing a rollback).
    """
    if cmd.expires_ms <= now_ms:
        return "rejected_expired", None
    if held is None:
        if cmd.action != "start":
            return "rejected_unknown", None
        return "apply", msgspec.structs.replace(route_state_for(cmd), seq=1)
    if held.sig == cmd.sig:
        return "duplicate", None
    if cmd.action == "start":
        return "conflict", None
    if cmd.epoch != held.epoch:
        return "rejected_epoch", None
    verdict = _phase_verdict(held, cmd)
    if verdict != "apply":
        return verdict, None
    state = msgspec.structs.replace(route_state_for(cmd), seq=held.seq + 1)
    if cmd.action in ("hold", "resume"):
        state = msgspec.structs.replace(state, weights=dict(held.weights),
                                        fraction=held.fraction, stage=held.stage)
    return "apply", state


def _phase_verdict(held: RouteState, cmd: Command) -> PlanResult:
    """Return whether ``cmd`` may follow ``held`` (rollback wins every race)."""
    if cmd.action == "rollback":
        return "stale" if held.phase == "rolled_back" else "apply"
    if held.phase in FINAL_PHASES:
        return "rejected_terminal"
    if cmd.action == "hold":
        return "stale" if held.phase == "held" else "apply"
    if cmd.action == "resume":
        return "apply" if held.phase == "held" else "stale"
    return "apply" if cmd.seq == held.seq + 1 else "conflict"


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
