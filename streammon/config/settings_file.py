"""One TOML settings file plus ``STREAMMON_*`` environment overrides, for every process.

Precedence, lowest first: built-in defaults (or ``base``), the file, the environment.
Every Kafka and Redis client option passes through unchanged: ``[kafka.options]``
becomes :attr:`KafkaSettings.options` (librdkafka names, e.g. ``"sasl.username"``) and
``[redis.options]`` becomes :attr:`RedisSettings.options` (``redis.Redis`` keyword
arguments, e.g. ``ssl_ca_certs``)::

    app_id = "streammon"
    key_dir = "/etc/streammon/keys"
    [kafka]
    bootstrap_servers = "kafka-1:9092,kafka-2:9092"
    [kafka.options]
    "security.protocol" = "SASL_SSL"
    [redis]
    url = "rediss://redis:6380/0"
    [topics]
    prefix = "streammon."

Environment: ``STREAMMON_KAFKA_BOOTSTRAP``, ``STREAMMON_REDIS_URL``,
``STREAMMON_TOPIC_PREFIX``, ``STREAMMON_APP_ID``, ``STREAMMON_KEY_DIR``,
``STREAMMON_DATA_DIR``, ``STREAMMON_WEB_PORT``, ``STREAMMON_FAST_GROUP_JOIN`` (1/0), and
per option ``STREAMMON_KAFKA_OPT_<NAME>`` (``SASL_USERNAME`` -> ``sasl.username``) and
``STREAMMON_REDIS_OPT_<NAME>`` (``SSL_CA_CERTS`` -> ``ssl_ca_certs``; JSON values such as
``2.5`` or ``true`` are decoded). :func:`check_config` explains what is wrong with a file.
"""

from __future__ import annotations

import difflib
import os
import tomllib
from collections.abc import Mapping
from dataclasses import replace
from pathlib import Path
from typing import Any

from streammon.config.env import (
    CONFIG_ENV,
    env_options,
    env_values,
    keyring_for,
)
from streammon.config.settings import KafkaSettings, RedisSettings, Settings, TopicNames
from streammon.errors import ConfigError

_SCALAR = (str, int, float, bool)
# section -> key -> (expected type(s), human description, example)
SCHEMA: dict[str, dict[str, tuple[tuple[type, ...], str, str]]] = {
    "": {"app_id": ((str,), "a string", '"streammon"'),
         "key_dir": ((str,), "a directory of Ed25519 keys (`streammon keys new`)",
                     '"/etc/streammon/keys"'),
         "data_dir": ((str,), "a directory path", '".streammon"'),
         "web_port": ((int,), "an integer port", "6066")},
    "kafka": {"bootstrap_servers": ((str,), "a string of host:port pairs", '"kafka:9092"'),
              "fast_group_join": ((bool,), "true or false", "false"),
              "options": ((dict,), "a table of librdkafka options", '{"acks" = "all"}')},
    "redis": {"url": ((str,), "a redis:// or rediss:// URL", '"redis://redis:6379/0"'),
              "options": ((dict,), "a table of redis.Redis keyword arguments",
                          "{socket_timeout = 2.0}")},
    "topics": {"prefix": ((str,), "a string", '"streammon."')},
}



def load_settings(path: str | Path | None = None, env: Mapping[str, str] | None = None, *,
                  base: Settings | None = None) -> Settings:
    """Return Settings from ``base`` (default: built-in), the TOML file, then the environment.

    ``path`` defaults to ``$STREAMMON_CONFIG``; no path means no file. Raise ConfigError
    listing every problem of a bad file.
    """
    env = os.environ if env is None else env
    path = path or env.get(CONFIG_ENV) or None
    data = read_file(path) if path else {}
    problems = check_data(data)
    if problems:
        raise ConfigError(f"{path}: " + "; ".join(problems))
    return _apply(base or Settings(), _merge_env(data, env))


def read_file(path: str | Path) -> dict[str, Any]:
    """Parse a TOML file; raise ConfigError naming the line of a syntax error."""
    try:
        with open(path, "rb") as fh:
            return tomllib.load(fh)
    except OSError as exc:
        raise ConfigError(f"cannot read settings file {path}: {exc}") from exc
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path}: not valid TOML: {exc}") from exc


def check_config(path: str | Path, env: Mapping[str, str] | None = None) -> list[str]:
    """Return one plain sentence per problem of a settings file (empty: the file is fine).

    Beyond the file's own keys and types, librdkafka judges the Kafka options merged with
    the environment's ``STREAMMON_KAFKA_OPT_*`` (where secrets usually live).
    """
    try:
        data = read_file(path)
    except ConfigError as exc:
        return [str(exc)]
    problems = check_data(data)
    if not problems:
        merged = _merge_env(data, os.environ if env is None else env)
        problems += _librdkafka_problems(merged.get("kafka", {}).get("options", {}))
    return problems


def check_data(data: Mapping[str, Any]) -> list[str]:
    """Return the problems of parsed settings: unknown keys, wrong types, bad options."""
    problems: list[str] = []
    for key, value in data.items():
        if key in SCHEMA and key:
            if not isinstance(value, dict):
                problems.append(f"`{key}` must be a table: write it as [{key}]")
                continue
            problems += _check_section(key, value)
        else:
            problems += _check_key("", key, value)
    return problems


def _check_section(section: str, table: Mapping[str, Any]) -> list[str]:
    problems: list[str] = []
    for key, value in table.items():
        problems += _check_key(section, key, value)
    if isinstance(table.get("options"), dict):
        problems += _check_options(section, table["options"])
    return problems


def _check_key(section: str, key: str, value: Any) -> list[str]:
    known = SCHEMA[section]
    where = f"{section}.{key}" if section else key
    if key not in known:
        candidates = list(known) + ([] if section else [s for s in SCHEMA if s])
        return [f"unknown key `{where}`{_did_you_mean(key, candidates)}"]
    types, what, example = known[key]
    if not isinstance(value, types) or (bool not in types and isinstance(value, bool)):
        # the value is never echoed: a misplaced secret must not end up in a log
        return [f"`{where}` must be {what}, got a value of type {type(value).__name__}: "
                f"write e.g. {key} = {example}"]
    return []


def _check_options(section: str, options: Mapping[str, Any]) -> list[str]:
    problems = [f"`{section}.options.{k}` must be a string, number or boolean, got "
                f"{type(v).__name__}" for k, v in options.items() if not isinstance(v, _SCALAR)]
    if section == "redis":
        known = _redis_keywords()
        problems += [f"unknown Redis option `redis.options.{k}`{_did_you_mean(k, known)}"
                     for k in options if k not in known]
    return problems


def _did_you_mean(word: str, candidates: list[str]) -> str:
    close = difflib.get_close_matches(word, candidates, n=1, cutoff=0.6)
    return f": did you mean `{close[0]}`?" if close else f" (known: {', '.join(candidates)})"


def _redis_keywords() -> list[str]:
    import inspect

    import redis

    params = inspect.signature(redis.Redis.__init__).parameters
    return [p for p in params if p not in ("self", "host", "port", "db", "kwargs")]


def _librdkafka_problems(options: Mapping[str, Any]) -> list[str]:
    """Ask librdkafka itself (no connection is made without bootstrap servers)."""
    from confluent_kafka import KafkaException, Producer

    try:
        Producer({k: _kafka_value(v) for k, v in options.items()})
    except KafkaException as exc:
        return [f"`kafka.options` rejected by librdkafka: {exc.args[0].str()}"]
    except (TypeError, ValueError) as exc:
        return [f"`kafka.options` rejected by librdkafka: {exc}"]
    return []


def _kafka_value(value: Any) -> str:
    return str(value).lower() if isinstance(value, bool) else str(value)


def _merge_env(data: Mapping[str, Any], env: Mapping[str, str]) -> dict[str, Any]:
    """Return a copy of the file's data with every ``STREAMMON_*`` override applied."""
    merged: dict[str, Any] = {k: dict(v) if isinstance(v, dict) else v for k, v in data.items()}
    for (section, key), value in env_values(env).items():
        target = merged.setdefault(section, {}) if section else merged
        target[key] = value
    for section, options in env_options(env).items():
        merged.setdefault(section, {}).setdefault("options", {}).update(options)
    return merged


def _apply(base: Settings, data: Mapping[str, Any]) -> Settings:
    kafka, redis_, topics = data.get("kafka", {}), data.get("redis", {}), data.get("topics", {})
    kafka_settings = KafkaSettings(
        bootstrap_servers=kafka.get("bootstrap_servers", base.kafka.bootstrap_servers),
        options={**base.kafka.options,
                 **{k: _kafka_value(v) for k, v in kafka.get("options", {}).items()}},
        fast_group_join=kafka.get("fast_group_join", base.kafka.fast_group_join))
    redis_settings = RedisSettings(url=redis_.get("url", base.redis.url),
                                   options={**base.redis.options, **redis_.get("options", {})})
    key_dir = data.get("key_dir")
    keys = base.keys
    if key_dir or data.get("dev_keys"):
        keys = keyring_for(key_dir or "", operator=data.get("principal", base.keys.operator),
                           dev=bool(data.get("dev_keys")))
    return replace(
        base, kafka=kafka_settings, redis=redis_settings,
        topics=TopicNames(prefix=topics.get("prefix", base.topics.prefix)),
        app_id=data.get("app_id", base.app_id),
        keys=keys, key_dir=key_dir or base.key_dir,
        data_dir=data.get("data_dir", base.data_dir), web_port=data.get("web_port", base.web_port))
