"""Operator commands through the CLI: the same signed, sequenced path as the decider's."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import pytest

from streammon.cli import main
from streammon.config.env import settings_to_env
from streammon.config.settings import Settings
from streammon.control import operator_commands
from streammon.control.registry import Checkpoint, Registry, hash_file
from streammon.kafka.topics import apply_topics
from tests.helpers import DECIDER_KEY, NOW_MS


def wait_for_seq(client: Any, rollout_id: str, seq: int, timeout_s: float = 20.0) -> dict[str, Any]:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        raw = client.get(f"streammon:rollout:{rollout_id}")
        if raw is not None and json.loads(raw)["seq"] >= seq:
            return dict(json.loads(raw))
        time.sleep(0.05)
    raise AssertionError(f"seq {seq} not applied within {timeout_s} s")


@pytest.fixture
def cli_env(settings: Settings, monkeypatch: pytest.MonkeyPatch) -> Settings:
    for name, value in settings_to_env(settings).items():
        monkeypatch.setenv(name, value)
    return settings


def test_operator_steers_a_rollout_from_the_cli(
    cli_env: Settings, spawn: Any, redis_client: Any, tmp_path: Path, unique: str,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """start, hold, resume and rollback each take one command, are applied in order by the
    actuator, and `rollout history` lists them; hold keeps the weights, rollback restores
    the pinned baseline."""
    apply_topics(cli_env.kafka, cli_env.topics)
    spawn("actuator")
    weights = tmp_path / "v1.bin"
    weights.write_bytes(b"v1")
    base = f"v1-{unique}"  # pins are global in Redis: one version name per test
    assert main(["pin", base, "--weights-uri", str(weights)]) == 0
    assert Registry(redis_client).get(base).content_hash == hash_file(weights)
    rid = f"op-{unique}"
    spec = tmp_path / "spec.json"
    spec.write_text(json.dumps({
        "rollout_id": rid, "baseline": base, "candidate": "v2", "f0": 0.1,
        "metrics": [{"name": "label", "kind": "binary", "bad_direction": "decrease"}]}))
    assert main(["rollout", "start", str(spec)]) == 0
    assert wait_for_seq(redis_client, rid, 1)["weights"] == {base: 0.9, "v2": 0.1}
    assert main(["rollout", "hold", rid]) == 0
    held = wait_for_seq(redis_client, rid, 2)
    assert held["phase"] == "held" and held["weights"] == {base: 0.9, "v2": 0.1}
    assert main(["rollout", "resume", rid]) == 0
    assert wait_for_seq(redis_client, rid, 3)["phase"] == "running"
    assert main(["rollout", "rollback", rid, "--reason", "pager"]) == 0
    final = wait_for_seq(redis_client, rid, 4)
    assert final["weights"] == {base: 1.0} and final["issued_by"] == "operator"
    capsys.readouterr()
    assert main(["rollout", "history", rid]) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    assert [line.split()[2] for line in lines] == ["start", "hold", "resume", "rollback"]


def test_start_refuses_an_unpinned_baseline(cli_env: Settings, unique: str, tmp_path: Path,
                                            capsys: pytest.CaptureFixture[str]) -> None:
    """A rollout whose baseline is not pinned does not start, and the error says so."""
    spec = tmp_path / "spec.json"
    spec.write_text(json.dumps({
        "rollout_id": f"np-{unique}", "baseline": f"ghost-{unique}", "candidate": "v2",
        "metrics": [{"name": "label", "kind": "binary", "bad_direction": "decrease"}]}))
    assert main(["rollout", "start", str(spec)]) == 2
    assert "pin" in capsys.readouterr().err.lower()


def test_manual_command_for_unknown_rollout_is_refused(cli_env: Settings, redis_client: Any,
                                                      unique: str) -> None:
    """A manual command for a rollout that never started fails with a clear error."""
    with pytest.raises(Exception, match="start it first"):
        operator_commands.send_manual(cli_env, f"nope-{unique}", "rollback", client=redis_client)


def test_manual_command_that_loses_a_seq_race_is_resent(
    cli_env: Settings, spawn: Any, redis_client: Any, tmp_path: Path, unique: str,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """When the decider takes the sequence number an operator picked, the operator's
    rollback is re-signed with the next number and still lands."""
    from streammon.control import commands

    apply_topics(cli_env.kafka, cli_env.topics)
    spawn("actuator")
    base, rid = f"v1-{unique}", f"race-{unique}"
    weights = tmp_path / "w.bin"
    weights.write_bytes(b"w")
    Registry(redis_client).pin(Checkpoint(version=base, weights_uri=str(weights),
                                          content_hash=hash_file(weights)))
    for seq, action, fraction in ((1, "start", 0.1), (2, "step", 0.2)):
        operator_commands.produce_command(cli_env, commands.make_command(
            rollout_id=rid, seq=seq, action=action, baseline=base, candidate="v2",
            fraction=fraction, now_ms=NOW_MS + seq, key=DECIDER_KEY))
        wait_for_seq(redis_client, rid, seq)
    stale = operator_commands.current_route(redis_client, rid)
    stale = type(stale)(**{**{f: getattr(stale, f) for f in stale.__struct_fields__}, "seq": 1})
    reads = iter([stale])
    real = operator_commands.current_route
    monkeypatch.setattr(operator_commands, "current_route",
                        lambda client, r: next(reads, None) or real(client, r))
    cmd = operator_commands.send_manual(cli_env, rid, "rollback", client=redis_client,
                                        reason="race")
    assert cmd.seq == 3
    final = wait_for_seq(redis_client, rid, 3)
    assert final["action"] == "rollback" and final["weights"] == {base: 1.0}
