"""The Redis edge of control: one way to connect, one way to report a Redis failure.

Every process that talks to Redis (actuator, router, registry, status, demo, traffic)
connects with :func:`connect`, so ``settings.redis.options`` (TLS, ACL users, timeouts)
apply everywhere alike, and wraps redis-py errors with :func:`redis_io_error`.
"""

from __future__ import annotations

from typing import Any

import redis

from streammon.config.settings import Settings
from streammon.errors import RedisIOError


def connect(settings: Settings, **overrides: Any) -> redis.Redis:
    """Return a client for ``settings.redis``; ``settings.redis.options`` win over ``overrides``.

    ``overrides`` are defaults a caller prefers (the router's fail-fast ``retry``); an
    option set in the settings still takes precedence, as it always did.
    """
    return redis.Redis.from_url(settings.redis.url, **{**overrides, **settings.redis.to_redis()})


def redis_io_error(what: str, exc: redis.RedisError) -> RedisIOError:
    """Wrap a redis-py error; say so plainly when Redis refused the credentials or ACL."""
    hint = ""
    if isinstance(exc, redis.AuthenticationError | redis.exceptions.NoPermissionError):
        hint = " (Redis refused the credentials or the ACL: set username/password in "
        hint += "RedisSettings.url or RedisSettings.options)"
    return RedisIOError(f"{what}: {exc}{hint}")
