"""The command line: where settings come from, and how errors reach the user."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import pytest

from streammon.cli import build_parser, main
from streammon.config.env import settings_from_env, settings_to_env


def test_environment_overrides_defaults(tmp_path: Path) -> None:
    """STREAMMON_* variables set the broker, Redis, prefix, app id and key directory."""
    assert main(["keys", "new", "decider", "--dir", str(tmp_path / "keys")]) == 0
    env = {"STREAMMON_KAFKA_BOOTSTRAP": "k:1", "STREAMMON_REDIS_URL": "redis://r:2/0",
           "STREAMMON_TOPIC_PREFIX": "p.", "STREAMMON_APP_ID": "a",
           "STREAMMON_KEY_DIR": str(tmp_path / "keys"), "STREAMMON_DATA_DIR": str(tmp_path)}
    s = settings_from_env(env)
    assert (s.kafka.bootstrap_servers, s.redis.url, s.topics.control, s.app_id) == (
        "k:1", "redis://r:2/0", "p.control", "a")
    assert list(s.keys.signing) == ["decider"] and not s.keys.dev
    assert not s.kafka.fast_group_join


def test_no_keys_outside_dev_means_an_empty_keyring(tmp_path: Path) -> None:
    """Without STREAMMON_KEY_DIR or a dev stack no key is made up (no built-in secret)."""
    s = settings_from_env({"STREAMMON_DATA_DIR": str(tmp_path)})
    assert s.keys.empty and not s.keys.dev


def test_settings_survive_the_round_trip_to_a_child(tmp_path: Path) -> None:
    """settings_to_env gives a child process exactly the parent's settings."""
    s = settings_from_env({"STREAMMON_KAFKA_BOOTSTRAP": "k:1", "STREAMMON_DATA_DIR": str(tmp_path),
                           "STREAMMON_FAST_GROUP_JOIN": "1"})
    assert settings_from_env(settings_to_env(s)) == s


def test_backtest_prints_one_verdict_per_window(tmp_path: Path,
                                                capsys: pytest.CaptureFixture[str]) -> None:
    """`streammon backtest FILE` replays the test and prints a verdict for every window."""
    csv = tmp_path / "cells.csv"
    rows = ["window,segment,n_a,sum_a,sumsq_a,n_b,sum_b,sumsq_b"]
    rows += [f"{w},all,5000,500,500,5000,250,250" for w in range(6)]
    csv.write_text("\n".join(rows) + "\n")
    assert main(["backtest", str(csv), "--kind", "binary", "--bad-direction", "decrease"]) == 0
    verdicts = [line.split()[-1] for line in capsys.readouterr().out.strip().splitlines()]
    assert len(verdicts) == 6 and verdicts[-1] == "rollback"


def test_bad_rollout_spec_is_reported_with_the_field(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """A spec with a wrongly typed field exits 2 and names the field, before any I/O."""
    spec = tmp_path / "spec.json"
    spec.write_text(json.dumps({"rollout_id": "r", "baseline": "a", "candidate": "b",
                                "metrics": [], "f0": "lots"}))
    monkeypatch.setenv("STREAMMON_DATA_DIR", str(tmp_path))
    monkeypatch.setenv("STREAMMON_REDIS_URL", "redis://127.0.0.1:1/0")
    assert main(["rollout", "start", str(spec)]) == 2
    assert "$.f0" in capsys.readouterr().err


def _subcommands(parser: argparse.ArgumentParser) -> dict[str, argparse.ArgumentParser]:
    """Return every (nested) subcommand parser by its full name."""
    out: dict[str, argparse.ArgumentParser] = {}
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, sub in action.choices.items():
                full = f"{parser.prog.removeprefix('streammon').strip()} {name}".strip()
                out[full] = sub
                out.update(_subcommands(sub))
    return out


def test_every_subcommand_explains_itself_with_an_example() -> None:
    """Each command's help says what it does for an operator and shows an example."""
    subs = _subcommands(build_parser())
    for name in ("demo", "worker", "actuator", "dev", "topics", "pin", "report",
                 "rollout start", "rollout status", "rollout history", "rollout diagnose",
                 "rollout promote", "rollout rollback", "rollout hold", "rollout resume"):
        text = subs[name].format_help()
        assert subs[name].description, name
        assert "example" in text and f"streammon {name}" in text, name


def test_rollout_actions_are_subcommands_with_their_own_flags() -> None:
    """`--watch` belongs to status only, `--reason` to manual commands only."""
    parser = build_parser()
    args = parser.parse_args(["rollout", "status", "r1", "--watch"])
    assert args.watch and args.rollout_id == "r1"
    args = parser.parse_args(["rollout", "rollback", "r1", "--reason", "pager"])
    assert args.action == "rollback" and args.reason == "pager"
    with pytest.raises(SystemExit):
        parser.parse_args(["rollout", "hold", "r1", "--watch"])
    with pytest.raises(SystemExit):
        parser.parse_args(["rollout", "status", "r1", "--reason", "x"])
