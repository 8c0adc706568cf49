"""Integration tests for pinned checkpoints on the embedded Redis."""

from __future__ import annotations

from pathlib import Path

import pytest
import redis
from redis.backoff import NoBackoff
from redis.retry import Retry

from streammon.control.registry import Checkpoint, Registry, hash_file
from streammon.errors import ConfigError, IntegrityError, NotPinnedError, RedisIOError


def _checkpoint(version: str, path: Path) -> Checkpoint:
    path.write_bytes(b"weights of " + version.encode())
    return Checkpoint(
        version=version,
        weights_uri=path.as_uri(),
        content_hash=hash_file(path),
        config={"lr": 0.01},
        features=["age", "country"],
        environment={"python": "3.11"},
    )


def test_pin_then_get_round_trips(redis_client: redis.Redis, unique: str, tmp_path: Path) -> None:
    """A pinned checkpoint reads back with every field and a pin timestamp."""
    registry = Registry(redis_client)
    pinned = registry.pin(_checkpoint(f"v-{unique}", tmp_path / "w.bin"), now_ms=123)
    got = registry.get(f"v-{unique}")
    assert got == pinned
    assert got.pinned_at_ms == 123
    assert got.features == ["age", "country"]


def test_unpinned_version_raises(redis_client: redis.Redis, unique: str) -> None:
    """Looking up a version that was never pinned raises NotPinnedError."""
    with pytest.raises(NotPinnedError):
        Registry(redis_client).require_pinned(f"nope-{unique}")


def test_repin_is_idempotent_but_never_rewrites(
    redis_client: redis.Redis, unique: str, tmp_path: Path
) -> None:
    """Pinning the same hash again changes nothing; another hash for the version is refused."""
    registry = Registry(redis_client)
    checkpoint = _checkpoint(f"v-{unique}", tmp_path / "w.bin")
    registry.pin(checkpoint)
    before = len(registry.history())
    registry.pin(checkpoint)
    assert len(registry.history()) == before
    with pytest.raises(ConfigError, match="content_hash"):
        registry.pin(
            Checkpoint(
                version=checkpoint.version, weights_uri="x", content_hash="sha256:" + "0" * 64
            )
        )


def test_history_lists_pins_newest_last(
    redis_client: redis.Redis, unique: str, tmp_path: Path
) -> None:
    """Every pin is appended to the history in order."""
    registry = Registry(redis_client)
    registry.pin(_checkpoint(f"a-{unique}", tmp_path / "a.bin"))
    registry.pin(_checkpoint(f"b-{unique}", tmp_path / "b.bin"))
    versions = [c.version for c in registry.history()]
    assert versions[-2:] == [f"a-{unique}", f"b-{unique}"]


def test_verify_detects_changed_weights(
    redis_client: redis.Redis, unique: str, tmp_path: Path
) -> None:
    """verify passes on the pinned bytes and raises IntegrityError once the file changes."""
    registry = Registry(redis_client)
    path = tmp_path / "w.bin"
    registry.pin(_checkpoint(f"v-{unique}", path))
    registry.verify(f"v-{unique}")
    path.write_bytes(b"tampered")
    with pytest.raises(IntegrityError, match="hash"):
        registry.verify(f"v-{unique}")
    path.unlink()
    with pytest.raises(IntegrityError, match="missing"):
        registry.verify(f"v-{unique}")


def test_verify_remote_uri_uses_given_hasher(redis_client: redis.Redis, unique: str) -> None:
    """A remote URI is checked only for format, or with the caller's hash function."""
    registry = Registry(redis_client)
    good = "sha256:" + "b" * 64
    registry.pin(Checkpoint(version=f"s3-{unique}", weights_uri="s3://b/m", content_hash=good))
    registry.verify(f"s3-{unique}")
    registry.verify(f"s3-{unique}", compute_hash=lambda uri: good)
    with pytest.raises(IntegrityError):
        registry.verify(f"s3-{unique}", compute_hash=lambda uri: "sha256:" + "c" * 64)


def test_redis_errors_are_wrapped() -> None:
    """A dead Redis surfaces as RedisIOError with the redis-py error as its cause."""
    dead = redis.Redis(host="127.0.0.1", port=1, retry=Retry(NoBackoff(), 0))
    with pytest.raises(RedisIOError) as info:
        Registry(dead).get("v1")
    assert isinstance(info.value.__cause__, redis.ConnectionError)
