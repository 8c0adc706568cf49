"""CLI errors say how to fix them, and help names what every argument means."""

from __future__ import annotations

import argparse
import json
import logging
from pathlib import Path

import pytest

from streammon.cli import build_parser, error_text, main
from streammon.errors import KafkaIOError, RedisIOError
from streammon.kafka.topic_reader import quiet_kafka_logger


def test_unreachable_broker_and_redis_errors_name_the_setting_and_the_fix() -> None:
    """"cannot reach Kafka" points to `streammon dev up` and STREAMMON_KAFKA_BOOTSTRAP;
    a refused Redis connection to STREAMMON_REDIS_URL; a credentials error keeps its own hint."""
    kafka = error_text(KafkaIOError("cannot reach Kafka at 127.0.0.1:9092: transport failure"))
    assert "streammon dev up" in kafka and "STREAMMON_KAFKA_BOOTSTRAP" in kafka
    assert "bootstrap_servers" in kafka
    redis = error_text(RedisIOError("cannot read the pin of a: Error 111 connecting"))
    assert "streammon dev up" in redis and "STREAMMON_REDIS_URL" in redis
    creds = "cannot read x: denied (Redis refused the credentials or the ACL: set ...)"
    assert error_text(RedisIOError(creds)) == creds


def test_a_repeated_librdkafka_message_is_logged_once(caplog: pytest.LogCaptureFixture) -> None:
    """The same connection failure (only its numbers differ) reaches the log once, not 20x/s."""
    logger = quiet_kafka_logger("streammon.kafka.test-once")
    with caplog.at_level(logging.ERROR, logger="streammon.kafka.test-once"):
        for ms in range(50):
            logger.error("FAIL 127.0.0.1:9092: Connection refused (after %dms)", ms)
        logger.error("FAIL 127.0.0.1:9092: SASL authentication failed")
    assert len(caplog.records) == 2


def _subparsers(parser: argparse.ArgumentParser) -> list[argparse.ArgumentParser]:
    out = []
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for sub in action.choices.values():
                out += [sub, *_subparsers(sub)]
    return out


def test_every_positional_argument_and_option_has_help() -> None:
    """Every argument of every subcommand says what it is (hidden ones excepted)."""
    missing = [f"{p.prog} {a.dest}" for p in _subparsers(build_parser()) for a in p._actions
               if not isinstance(a, argparse._SubParsersAction | argparse._HelpAction)
               and not a.help and a.help != argparse.SUPPRESS]
    assert missing == []


def _start(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, spec: dict[str, object],
           capsys: pytest.CaptureFixture[str]) -> str:
    path = tmp_path / "spec.json"
    path.write_text(json.dumps(spec))
    monkeypatch.setenv("STREAMMON_DATA_DIR", str(tmp_path))
    monkeypatch.setenv("STREAMMON_REDIS_URL", "redis://127.0.0.1:1/0")
    assert main(["rollout", "start", str(path)]) == 2
    return capsys.readouterr().err


_SPEC = {"rollout_id": "r", "baseline": "a", "candidate": "b",
         "metrics": [{"name": "label", "kind": "binary", "bad_direction": "decrease"}]}


def test_a_misspelt_spec_field_is_an_error_naming_it_and_the_likely_name(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str]) -> None:
    """`alpah` is not silently ignored (the default alpha would apply): it is named, with
    `alpha` suggested, and so is a misspelt metric field, before any I/O."""
    spec = {**_SPEC, "alpah": 0.01,
            "metrics": [{"name": "label", "kind": "binary", "bad_direction": "decrease",
                         "margn": 0.01}]}
    err = _start(tmp_path, monkeypatch, spec, capsys)
    assert "$.alpah (did you mean alpha?)" in err
    assert "$.metrics[0].margn (did you mean margin?)" in err


def test_a_value_outside_a_choice_lists_the_allowed_values(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str]) -> None:
    """bad_direction "down" names the field and says: use one of decrease, increase."""
    spec = {**_SPEC, "metrics": [{"name": "label", "kind": "binary", "bad_direction": "down"}]}
    err = _start(tmp_path, monkeypatch, spec, capsys)
    assert "$.metrics[0].bad_direction" in err and "use one of: decrease, increase" in err
