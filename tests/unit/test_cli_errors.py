"""CLI errors say how to fix them, and help names what every argument means."""

from __future__ import annotations

import argparse
import logging

import pytest

from streammon.cli import build_parser, error_text
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
