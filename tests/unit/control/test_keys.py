"""Per-principal Ed25519 keys: files, rotation, public-only verifiers, refusing to start."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import msgspec
import pytest
import redis

from streammon.cli import main
from streammon.config.settings import Settings
from streammon.control.actuator import Actuator
from streammon.control.commands import make_command, route_state_for, sign_state
from streammon.control.keys import Keyring, load_keyring, new_key
from streammon.errors import CommandError, ConfigError
from streammon.sdk.router import Router
from tests.helpers import ACTUATOR_KEY, DECIDER_KEY, DEV_KEYS, SERVING_NODE_KEY

PUBLIC_ONLY = Keyring(trusted=DEV_KEYS.trusted)
_OFFLINE = {"host": "127.0.0.1", "port": 1, "socket_connect_timeout": 0.2}


def _cmd(seq: int, action: str = "promote", **kw: object) -> object:
    return make_command(rollout_id="r1", seq=seq, action=action, baseline="v1",  # type: ignore[arg-type]
                        candidate="v2", fraction=1.0, now_ms=1_000, epoch="e", **kw)  # type: ignore[arg-type]


def _router() -> Router:
    return Router(client=redis.Redis(**_OFFLINE), rollout_id="r1", default_version="v1",
                  keys=PUBLIC_ONLY)


def test_router_with_public_keys_only_rejects_a_serving_nodes_command() -> None:
    """A router holding only public keys refuses a promote signed by a serving node's key,
    even when it claims to come from the decider, and takes the decider's own."""
    router = _router()
    forged = _cmd(2, key=SERVING_NODE_KEY)
    claimed = msgspec.structs.replace(forged, issued_by="decider")  # type: ignore[type-var]
    assert not router.offer(forged) and not router.offer(claimed)  # type: ignore[arg-type]
    assert router.snapshot is None and router.stats["rejected_signature"] == 2
    assert router.offer(_cmd(2, key=DECIDER_KEY))  # type: ignore[arg-type]


def test_router_takes_only_route_states_the_actuator_signed() -> None:
    """A route state in Redis not signed by the actuator (forged seq 2**53) is ignored."""
    router = _router()
    state = route_state_for(_cmd(3, key=DECIDER_KEY))  # type: ignore[arg-type]
    forged = msgspec.structs.replace(state, seq=2**53)
    by_decider = msgspec.structs.replace(forged, state_sig=DECIDER_KEY.sign(b"x"))
    assert not router._take(msgspec.json.encode(forged))
    assert not router._take(msgspec.json.encode(by_decider))
    assert router.stats["rejected_state"] == 2 and router.snapshot is None
    assert router._take(msgspec.json.encode(sign_state(state, ACTUATOR_KEY)))
    assert router.snapshot is not None and router.snapshot.seq == 3


def test_keys_new_writes_a_private_file_only_its_owner_reads(tmp_path: Path) -> None:
    """`streammon keys new` writes a 0600 private key and a public key that verifies it."""
    assert main(["keys", "new", "decider", "--dir", str(tmp_path)]) == 0
    private = next(tmp_path.glob("decider.*.key"))
    assert stat.S_IMODE(os.stat(private).st_mode) == 0o600
    keys = load_keyring(tmp_path)
    cmd = make_command(rollout_id="r1", seq=2, action="step", baseline="v1", candidate="v2",
                       fraction=0.1, now_ms=1, key=keys.signer("decider"))
    keys.verify("decider", b"x", keys.signer("decider").sign(b"x"))
    assert cmd.issued_by == "decider"


def test_rotation_trusts_old_and_new_public_keys_at_once(tmp_path: Path) -> None:
    """With two decider .pub files trusted, commands signed by either key verify."""
    signers = tmp_path / "signers"
    trust = tmp_path / "trust"
    for _ in range(2):
        _private, public = new_key("decider", signers / str(_))
        trust.mkdir(exist_ok=True)
        (trust / public.name).write_text(public.read_text())
    keys = load_keyring(trust)
    assert len(keys.trusted["decider"]) == 2 and not keys.signing
    for sub in ("0", "1"):
        signer = load_keyring(signers / sub).signer("decider")
        keys.verify("decider", b"m", signer.sign(b"m"))
    with pytest.raises(CommandError):
        keys.verify("decider", b"m", SERVING_NODE_KEY.sign(b"m"))


def test_actuator_refuses_to_start_without_keys_and_names_the_fix(
        tmp_path: Path, capsys: pytest.CaptureFixture[str],
        monkeypatch: pytest.MonkeyPatch) -> None:
    """Outside dev, with no key directory, the actuator (class and CLI) will not start and
    the error says to run `streammon keys new`."""
    with pytest.raises(ConfigError, match="streammon keys new"):
        Actuator(settings=Settings(), client=redis.Redis(**_OFFLINE))
    for name in ("STREAMMON_KEY_DIR", "STREAMMON_DEV_KEYS", "STREAMMON_CONFIG"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("STREAMMON_DATA_DIR", str(tmp_path))
    assert main(["actuator"]) == 2
    assert "streammon keys new" in capsys.readouterr().err


def test_actuator_without_its_own_private_key_refuses(tmp_path: Path) -> None:
    """Public keys alone are not enough for the actuator: it signs the route state."""
    with pytest.raises(ConfigError, match="'actuator'"):
        Actuator(settings=Settings(keys=PUBLIC_ONLY), client=redis.Redis(**_OFFLINE))


def test_a_command_claiming_the_actuator_is_refused() -> None:
    """The actuator's key signs route states only, never commands."""
    from streammon.control.commands import verify

    with pytest.raises(CommandError, match="actuator"):
        verify(_cmd(2, key=ACTUATOR_KEY), DEV_KEYS)  # type: ignore[arg-type]
