"""Typed, frozen settings for every streammon process.

Settings are plain values passed to keyword-only constructors; only
:mod:`streammon.config` reads the environment (its one table is
:data:`streammon.config.env.ENV_VARS`). Every Kafka and Redis client option passes through unchanged
(``KafkaSettings.options``, ``RedisSettings.options``), so SASL, TLS and ACL users work
as they do with the clients themselves.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from streammon.control.keys import Keyring


@dataclass(frozen=True, kw_only=True)
class KafkaSettings:
    """Where Kafka is and how to talk to it.

    ``fast_group_join`` lowers consumer-group timeouts for the embedded broker, where
    groups otherwise take tens of seconds to form; leave it off against real Kafka.
    """

    bootstrap_servers: str = "127.0.0.1:9092"
    options: Mapping[str, str] = field(default_factory=dict)
    fast_group_join: bool = False

    def to_librdkafka(self, **overrides: Any) -> dict[str, Any]:
        """Return a confluent-kafka config dict: bootstrap, pass-through options, overrides."""
        conf: dict[str, Any] = {"bootstrap.servers": self.bootstrap_servers}
        conf.update(self.options)
        conf.update(overrides)
        return conf

    def consumer_config(self, group_id: str, **overrides: Any) -> dict[str, Any]:
        """Return a consumer config that starts fast and never stalls on fetch back-off."""
        conf: dict[str, Any] = {
            "group.id": group_id,
            "auto.offset.reset": "earliest",
            "enable.auto.commit": True,
            "enable.auto.offset.store": False,
            "fetch.queue.backoff.ms": 5,
            "fetch.wait.max.ms": 50,
        }
        if self.fast_group_join:
            conf.update(
                {
                    "session.timeout.ms": 6000,
                    "heartbeat.interval.ms": 1000,
                    "max.poll.interval.ms": 6000,
                }
            )
        conf.update(overrides)
        return self.to_librdkafka(**conf)

    def faust_broker_url(self) -> str:
        """Return the broker URL in Faust's ``kafka://host:port;host:port`` form."""
        hosts = [h.strip() for h in self.bootstrap_servers.split(",") if h.strip()]
        return ";".join(f"kafka://{h}" for h in hosts)


@dataclass(frozen=True, kw_only=True)
class RedisSettings:
    """Where Redis is; ``options`` pass through to ``redis.Redis.from_url``."""

    url: str = "redis://127.0.0.1:6379/0"
    options: Mapping[str, Any] = field(default_factory=dict)

    def to_redis(self) -> dict[str, Any]:
        """Return keyword arguments for ``redis.Redis.from_url(url, **kwargs)``."""
        conf: dict[str, Any] = {"socket_timeout": 2.0, "socket_connect_timeout": 2.0}
        conf.update(self.options)
        return conf


@dataclass(frozen=True, kw_only=True)
class TopicNames:
    """The names of streammon's topics, all under one prefix."""

    prefix: str = "streammon."

    @property
    def predictions(self) -> str:
        """Prediction events, keyed by request_id."""
        return f"{self.prefix}predictions"

    @property
    def outcomes(self) -> str:
        """Outcome events, keyed by request_id, co-partitioned with predictions."""
        return f"{self.prefix}outcomes"

    @property
    def cohorts(self) -> str:
        """Cumulative cohort-window summaries, keyed by rollout_id."""
        return f"{self.prefix}cohorts"

    @property
    def control(self) -> str:
        """Signed, sequenced rollout commands, keyed by rollout_id."""
        return f"{self.prefix}control"

    @property
    def diagnostics(self) -> str:
        """One assessment per rollout and closed window, keyed by rollout_id."""
        return f"{self.prefix}diagnostics"

    @property
    def rollbacks(self) -> str:
        """One post-mortem record per rollback, keyed by rollout_id."""
        return f"{self.prefix}rollbacks"

    @property
    def deadletters(self) -> str:
        """Rejected input, verbatim, with the reason in a header."""
        return f"{self.prefix}deadletters"


@dataclass(frozen=True, kw_only=True)
class Settings:
    """Everything a streammon process needs to know about its surroundings.

    ``keys`` holds the Ed25519 keys (:mod:`streammon.control.keys`); the default is empty, and
    processes that sign or verify refuse to start with it. ``key_dir`` records where
    they were read from, so child processes read the same.
    """

    kafka: KafkaSettings = field(default_factory=KafkaSettings)
    redis: RedisSettings = field(default_factory=RedisSettings)
    topics: TopicNames = field(default_factory=TopicNames)
    app_id: str = "streammon"
    keys: Keyring = field(default_factory=Keyring)
    key_dir: str = ""
    web_port: int | None = None
    data_dir: str = ".streammon"
