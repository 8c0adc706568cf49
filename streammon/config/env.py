"""The ``STREAMMON_*`` environment: one table, one parser, read in this one place.

Settings come from ``STREAMMON_*`` environment variables, else from the dev stack that
``streammon dev up`` recorded, else from the built-in defaults. :data:`ENV_VARS` lists
every variable with the settings key it sets; :func:`settings_from_env` reads them,
:func:`settings_to_env` writes them for a child process, and
:mod:`streammon.config.settings_file` applies the same table over a settings file.
``STREAMMON_KEY_DIR`` names the Ed25519 key directory (``streammon keys new``),
``STREAMMON_PRINCIPAL`` whom operator commands are signed as, ``STREAMMON_DEV_KEYS`` (or a
recorded dev stack) selects the public development keys; with none of them no key exists.
Booleans (``STREAMMON_FAST_GROUP_JOIN``, ``STREAMMON_DEV_KEYS``) accept ``1``/``true``/``yes``,
anything else is false.
Per-option overrides: ``STREAMMON_KAFKA_OPT_<NAME>`` and ``STREAMMON_REDIS_OPT_<NAME>``.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from dataclasses import replace
from typing import Any

from streammon.config.settings import KafkaSettings, RedisSettings, Settings, TopicNames
from streammon.control.keys import OPERATOR, Keyring, dev_keyring, load_keyring
from streammon.errors import ConfigError

CONFIG_ENV = "STREAMMON_CONFIG"
KAFKA_OPT_PREFIX = "STREAMMON_KAFKA_OPT_"
REDIS_OPT_PREFIX = "STREAMMON_REDIS_OPT_"
ENV_VARS: dict[str, tuple[str, str]] = {
    "STREAMMON_KAFKA_BOOTSTRAP": ("kafka", "bootstrap_servers"),
    "STREAMMON_REDIS_URL": ("redis", "url"),
    "STREAMMON_TOPIC_PREFIX": ("topics", "prefix"),
    "STREAMMON_APP_ID": ("", "app_id"),
    "STREAMMON_KEY_DIR": ("", "key_dir"),
    "STREAMMON_PRINCIPAL": ("", "principal"),
    "STREAMMON_DEV_KEYS": ("", "dev_keys"),
    "STREAMMON_DATA_DIR": ("", "data_dir"),
    "STREAMMON_WEB_PORT": ("", "web_port"),
    "STREAMMON_FAST_GROUP_JOIN": ("kafka", "fast_group_join"),
}
"""Every ``STREAMMON_*`` variable -> (settings section, key); section ``""`` is the top."""


def parse_env_value(var: str, text: str) -> Any:
    """Return the value ``text`` of variable ``var`` as its settings key expects it."""
    key = ENV_VARS[var][1]
    if key in ("fast_group_join", "dev_keys"):
        return text.strip().lower() in ("1", "true", "yes")
    if key == "web_port":
        try:
            return int(text)
        except ValueError as exc:
            raise ConfigError(f"{var} must be an integer, got {text!r}") from exc
    return text


def env_values(env: Mapping[str, str]) -> dict[tuple[str, str], Any]:
    """Return (section, key) -> parsed value for every variable of the table set in ``env``."""
    return {ENV_VARS[var]: parse_env_value(var, env[var]) for var in ENV_VARS if env.get(var)}


def env_options(env: Mapping[str, str]) -> dict[str, dict[str, Any]]:
    """Return the per-option overrides by section: ``{"kafka": {...}, "redis": {...}}``.

    ``STREAMMON_KAFKA_OPT_SASL_USERNAME`` sets librdkafka's ``sasl.username`` (text);
    ``STREAMMON_REDIS_OPT_SOCKET_TIMEOUT`` sets redis-py's ``socket_timeout`` (JSON, else text).
    """
    out: dict[str, dict[str, Any]] = {}
    for var, value in env.items():
        if var.startswith(KAFKA_OPT_PREFIX):
            name = var[len(KAFKA_OPT_PREFIX):].lower().replace("_", ".")
            out.setdefault("kafka", {})[name] = value
        elif var.startswith(REDIS_OPT_PREFIX):
            out.setdefault("redis", {})[var[len(REDIS_OPT_PREFIX):].lower()] = _json_or_text(value)
    return out


def _json_or_text(text: str) -> Any:
    try:
        return json.loads(text)
    except ValueError:
        return text


def settings_from_env(env: Mapping[str, str] | None = None) -> Settings:
    """Build Settings from ``STREAMMON_*`` variables and the recorded dev stack."""
    from streammon.devstack import read_state

    env = os.environ if env is None else env
    values = env_values(env)
    base = Settings()
    data_dir = values.get(("", "data_dir"), base.data_dir)
    dev = read_state(data_dir)
    kafka = KafkaSettings(
        bootstrap_servers=values.get(("kafka", "bootstrap_servers"),
                                     dev.kafka_bootstrap if dev else "127.0.0.1:9092"),
        fast_group_join=values.get(("kafka", "fast_group_join"), dev is not None))
    key_dir = values.get(("", "key_dir"), "")
    return replace(
        base, kafka=kafka,
        redis=RedisSettings(url=values.get(("redis", "url"),
                                           dev.redis_url if dev else base.redis.url)),
        topics=TopicNames(prefix=values.get(("topics", "prefix"), base.topics.prefix)),
        app_id=values.get(("", "app_id"), base.app_id),
        keys=keyring_for(key_dir, operator=values.get(("", "principal"), OPERATOR),
                         dev=dev is not None or values.get(("", "dev_keys"), False)),
        key_dir=key_dir,
        web_port=values.get(("", "web_port"), base.web_port), data_dir=data_dir)


def keyring_for(key_dir: str, *, operator: str = OPERATOR, dev: bool = False) -> Keyring:
    """Return the keys in ``key_dir``, else the public dev keys when ``dev``, else none.

    With no keys, every process that signs or verifies refuses to start (naming the fix).
    """
    if key_dir:
        return load_keyring(key_dir, operator=operator)
    return dev_keyring() if dev else Keyring()


def settings_to_env(settings: Settings) -> dict[str, str]:
    """Return the environment that makes a child ``streammon`` process use ``settings``."""
    values: dict[str, Any] = {
        "STREAMMON_KAFKA_BOOTSTRAP": settings.kafka.bootstrap_servers,
        "STREAMMON_REDIS_URL": settings.redis.url,
        "STREAMMON_TOPIC_PREFIX": settings.topics.prefix,
        "STREAMMON_APP_ID": settings.app_id,
        "STREAMMON_KEY_DIR": settings.key_dir,
        "STREAMMON_PRINCIPAL": settings.keys.operator,
        "STREAMMON_DEV_KEYS": "1" if settings.keys.dev else "0",
        "STREAMMON_DATA_DIR": settings.data_dir,
        "STREAMMON_WEB_PORT": settings.web_port,
        "STREAMMON_FAST_GROUP_JOIN": "1" if settings.kafka.fast_group_join else "0",
    }
    return {var: str(value) for var, value in values.items() if value is not None}
