"""Settings from ``STREAMMON_*`` environment variables, and back (for child processes).

Settings come from ``STREAMMON_*`` environment variables, else from the dev stack that
``streammon dev up`` recorded, else from localhost defaults:

``STREAMMON_KAFKA_BOOTSTRAP``  ``STREAMMON_REDIS_URL``  ``STREAMMON_TOPIC_PREFIX``
``STREAMMON_APP_ID``  ``STREAMMON_HMAC_KEY``  ``STREAMMON_DATA_DIR``
``STREAMMON_FAST_GROUP_JOIN`` (1 for the embedded broker)
"""

from __future__ import annotations

import os
from collections.abc import Mapping

from streammon.config.settings import (
    DEV_HMAC_KEY,
    KafkaSettings,
    RedisSettings,
    Settings,
    TopicNames,
)


def settings_from_env(env: Mapping[str, str] | None = None) -> Settings:
    """Build Settings from ``STREAMMON_*`` variables and the recorded dev stack."""
    from streammon.devstack import read_state

    env = os.environ if env is None else env
    data_dir = env.get("STREAMMON_DATA_DIR", ".streammon")
    dev = read_state(data_dir)
    bootstrap = env.get("STREAMMON_KAFKA_BOOTSTRAP") or (
        dev.kafka_bootstrap if dev else "127.0.0.1:9092")
    redis_url = env.get("STREAMMON_REDIS_URL") or (
        dev.redis_url if dev else "redis://127.0.0.1:6379/0")
    fast = env.get("STREAMMON_FAST_GROUP_JOIN", "1" if dev else "0") == "1"
    return Settings(
        kafka=KafkaSettings(bootstrap_servers=bootstrap, fast_group_join=fast),
        redis=RedisSettings(url=redis_url),
        topics=TopicNames(prefix=env.get("STREAMMON_TOPIC_PREFIX", "streammon.")),
        app_id=env.get("STREAMMON_APP_ID", "streammon"),
        hmac_key=env.get("STREAMMON_HMAC_KEY", "").encode() or DEV_HMAC_KEY,
        data_dir=data_dir,
    )


def settings_to_env(settings: Settings) -> dict[str, str]:
    """Return the environment that makes a child ``streammon`` process use ``settings``."""
    return {
        "STREAMMON_KAFKA_BOOTSTRAP": settings.kafka.bootstrap_servers,
        "STREAMMON_REDIS_URL": settings.redis.url,
        "STREAMMON_TOPIC_PREFIX": settings.topics.prefix,
        "STREAMMON_APP_ID": settings.app_id,
        "STREAMMON_HMAC_KEY": settings.hmac_key.decode(),
        "STREAMMON_DATA_DIR": settings.data_dir,
        "STREAMMON_FAST_GROUP_JOIN": "1" if settings.kafka.fast_group_join else "0",
    }
