"""The one Redis connect(): settings options apply and win over a caller's defaults."""

from __future__ import annotations

import redis

from streammon.config.settings import RedisSettings, Settings
from streammon.control.store import connect, redis_io_error
from streammon.errors import RedisIOError


def _kwargs(client: redis.Redis) -> dict[str, object]:
    return dict(client.connection_pool.connection_kwargs)


def test_connect_passes_settings_options_and_overrides() -> None:
    """A caller's default applies unless settings.redis.options set the same option."""
    settings = Settings(redis=RedisSettings(url="redis://127.0.0.1:1/3",
                                            options={"socket_timeout": 2.5}))
    client = connect(settings, socket_timeout=9.0, health_check_interval=7)
    kwargs = _kwargs(client)
    assert kwargs["socket_timeout"] == 2.5 and kwargs["health_check_interval"] == 7
    assert kwargs["db"] == 3 and kwargs["port"] == 1


def test_redis_io_error_names_the_acl_fix() -> None:
    """An authentication failure is wrapped in RedisIOError with the settings to change."""
    err = redis_io_error("cannot pin v1", redis.AuthenticationError("invalid password"))
    assert isinstance(err, RedisIOError)
    assert "cannot pin v1" in str(err) and "RedisSettings.url" in str(err)
