"""Pinned checkpoints: what a rollback switches back to, verified before it is used.

A rollout cannot start, and a rollback cannot route, until its baseline is pinned: its
weights URI, config, feature list, environment and a ``sha256:<hex>`` content hash. A
pin is immutable (re-pinning a version with another hash is refused) and nothing is
ever deleted: rollback is a switch, not a delete.

Redis layout (shared contract):

- ``streammon:pin:{version}`` -> JSON :class:`Checkpoint`.
- ``streammon:pins`` -> list of every pin record as JSON, newest last (the history).

Pins are written with ``SET NX`` (in one script with the history append), so two
processes pinning one version cannot both win. Reading local weights is bounded: only a
regular file (never a directory, device or FIFO such as ``/dev/zero``), under one of
``roots`` when roots are configured, at most ``max_bytes`` long, hashed within
``timeout_s``; anything else is an :class:`IntegrityError` naming the reason.
"""

from __future__ import annotations

import hashlib
import re
import stat as stat_mode
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlparse

import msgspec
import redis

from streammon.control.store import redis_io_error
from streammon.errors import ConfigError, IntegrityError, NotPinnedError

PIN_KEY_PREFIX = "streammon:pin:"
PINS_KEY = "streammon:pins"
HASH_PATTERN = re.compile(r"^sha256:[0-9a-f]{64}$")
_CHUNK_BYTES = 1 << 20
MAX_WEIGHTS_BYTES = 64 << 30
HASH_TIMEOUT_S = 300.0
# KEYS: pin key, history list. ARGV: record. 1 if pinned now, 0 if the version was pinned.
_PIN_LUA = """
if redis.call('SET', KEYS[1], ARGV[1], 'NX') then
  redis.call('RPUSH', KEYS[2], ARGV[1])
  return 1
end
return 0
"""


class Checkpoint(msgspec.Struct, frozen=True, kw_only=True):
    """One pinned model version: everything needed to serve it again, and its hash."""

    version: str
    weights_uri: str
    content_hash: str
    config: dict[str, Any] = msgspec.field(default_factory=dict)
    features: list[str] = msgspec.field(default_factory=list)
    environment: dict[str, str] = msgspec.field(default_factory=dict)
    pinned_at_ms: int = 0


def pin_key(version: str) -> str:
    """Return the Redis key holding the pin of ``version``."""
    return f"{PIN_KEY_PREFIX}{version}"


def hash_file(path: str | Path) -> str:
    """Return ``sha256:<hex>`` of a file's bytes, read in 1 MiB chunks."""
    digest = hashlib.sha256()
    with Path(path).open("rb") as handle:
        for chunk in iter(lambda: handle.read(_CHUNK_BYTES), b""):
            digest.update(chunk)
    return f"sha256:{digest.hexdigest()}"


def check_checkpoint(checkpoint: Checkpoint) -> None:
    """Raise ConfigError naming the field if ``checkpoint`` cannot be pinned."""
    if not checkpoint.version:
        raise ConfigError("checkpoint.version is empty")
    if not checkpoint.weights_uri:
        raise ConfigError(f"checkpoint.weights_uri is empty for {checkpoint.version}")
    if not HASH_PATTERN.match(checkpoint.content_hash):
        raise ConfigError(
            f"checkpoint.content_hash must look like sha256:<64 hex>, "
            f"got {checkpoint.content_hash!r} for {checkpoint.version}"
        )


def local_path(weights_uri: str) -> Path | None:
    """Return the local file a ``file://`` or plain-path URI names, else None."""
    parsed = urlparse(weights_uri)
    if parsed.scheme == "file":
        return Path(unquote(parsed.path))
    if parsed.scheme == "":
        return Path(weights_uri)
    return None


def file_stamp(path: Path, version: str) -> tuple[int, int]:
    """Return (size, mtime_ns) of a weights file; IntegrityError unless a regular file.

    A missing file, a directory or a device such as /dev/zero is refused.
    """
    try:
        stat = path.stat()
    except FileNotFoundError as exc:
        raise IntegrityError(f"{version}: weights file {path} is missing") from exc
    except OSError as exc:
        raise IntegrityError(f"{version}: weights file {path} is unreadable: {exc}") from exc
    if not stat_mode.S_ISREG(stat.st_mode):
        raise IntegrityError(f"{version}: weights {path} is not a regular file")
    return stat.st_size, stat.st_mtime_ns


def check_confined(path: Path, roots: tuple[Path, ...], version: str) -> Path:
    """Return the resolved ``path``; raise IntegrityError if it lies outside every root."""
    resolved = path.resolve()
    if roots and not any(resolved.is_relative_to(root.resolve()) for root in roots):
        raise IntegrityError(f"{version}: weights {resolved} are outside the weights roots "
                             f"{[str(r) for r in roots]}")
    return resolved


def hash_file_bounded(path: Path, *, max_bytes: int, timeout_s: float) -> str:
    """Return ``sha256:<hex>`` of a regular file; raise IntegrityError past the bounds."""
    digest, read, deadline = hashlib.sha256(), 0, time.monotonic() + timeout_s
    with path.open("rb") as handle:
        while chunk := handle.read(_CHUNK_BYTES):
            read += len(chunk)
            if read > max_bytes:
                raise IntegrityError(f"weights {path} exceed {max_bytes} bytes")
            if time.monotonic() > deadline:
                raise IntegrityError(f"hashing {path} took over {timeout_s:.0f} s")
            digest.update(chunk)
    return f"sha256:{digest.hexdigest()}"


def _check_hash(checkpoint: Checkpoint, actual: str) -> None:
    if actual != checkpoint.content_hash:
        raise IntegrityError(
            f"{checkpoint.version}: weights hash {actual} != pinned {checkpoint.content_hash}"
        )


class Registry:
    """Pin, look up and verify checkpoints in Redis."""

    def __init__(self, client: redis.Redis, *, roots: tuple[str | Path, ...] = (),
                 max_bytes: int = MAX_WEIGHTS_BYTES, timeout_s: float = HASH_TIMEOUT_S) -> None:
        self._client = client
        self._roots = tuple(Path(r) for r in roots)
        self._max_bytes = max_bytes
        self._timeout_s = timeout_s
        self._pin_script = client.register_script(_PIN_LUA)
        self._verified: dict[str, tuple[str, int, int]] = {}  # version -> hash, size, mtime

    def pin(self, checkpoint: Checkpoint, *, now_ms: int | None = None) -> Checkpoint:
        """Pin ``checkpoint`` (idempotent for the same hash); return the stored record."""
        check_checkpoint(checkpoint)
        existing = self._load(checkpoint.version)
        if existing is not None:
            if existing.content_hash != checkpoint.content_hash:
                raise ConfigError(
                    f"checkpoint.content_hash: {checkpoint.version} is already pinned with "
                    f"{existing.content_hash}; pin the new weights under a new version"
                )
            return existing
        if not checkpoint.pinned_at_ms:
            stamp = now_ms if now_ms is not None else int(time.time() * 1000)
            checkpoint = msgspec.structs.replace(checkpoint, pinned_at_ms=stamp)
        record = msgspec.json.encode(checkpoint)
        try:
            won = self._pin_script(keys=[pin_key(checkpoint.version), PINS_KEY], args=[record])
        except redis.RedisError as exc:
            raise redis_io_error(f"cannot pin {checkpoint.version}", exc) from exc
        if not won:  # another process pinned this version between our read and write
            return self.pin(checkpoint, now_ms=now_ms)
        return checkpoint

    def get(self, version: str) -> Checkpoint:
        """Return the pin of ``version``; raise NotPinnedError if there is none."""
        checkpoint = self._load(version)
        if checkpoint is None:
            raise NotPinnedError(f"{version} is not pinned - run `streammon registry pin`")
        return checkpoint

    def require_pinned(self, version: str) -> Checkpoint:
        """Return the pin of ``version`` after checking its hash is well-formed."""
        checkpoint = self.get(version)
        if not HASH_PATTERN.match(checkpoint.content_hash):
            raise IntegrityError(f"{version}: malformed content_hash {checkpoint.content_hash!r}")
        return checkpoint

    def verify(
        self,
        version: str,
        compute_hash: Callable[[str], str] | None = None,
        *,
        trust_unchanged: bool = False,
    ) -> Checkpoint:
        """Check the pinned hash against the weights; raise IntegrityError if they differ.

        ``compute_hash(weights_uri)`` overrides how the hash is computed. Without it a
        local file (``file://`` or a plain path) is hashed; for other schemes only the
        recorded hash's format is checked. With ``trust_unchanged`` a local file this
        registry object already verified is not hashed again while its size and mtime
        are unchanged (cheap enough for the rollback path; not proof against an
        attacker who can also reset the mtime).
        """
        checkpoint = self.require_pinned(version)
        if compute_hash is not None:
            _check_hash(checkpoint, compute_hash(checkpoint.weights_uri))
            return checkpoint
        path = local_path(checkpoint.weights_uri)
        if path is None:
            return checkpoint
        path = check_confined(path, self._roots, version)
        stamp = (checkpoint.content_hash, *file_stamp(path, version))
        if not (trust_unchanged and self._verified.get(version) == stamp):
            _check_hash(checkpoint, hash_file_bounded(path, max_bytes=self._max_bytes,
                                                      timeout_s=self._timeout_s))
            self._verified[version] = stamp
        return checkpoint

    def history(self) -> list[Checkpoint]:
        """Return every pin ever made, oldest first."""
        try:
            records = self._client.lrange(PINS_KEY, 0, -1)
        except redis.RedisError as exc:
            raise redis_io_error("cannot read pin history", exc) from exc
        return [self._decode(record) for record in records]

    def _load(self, version: str) -> Checkpoint | None:
        try:
            record = self._client.get(pin_key(version))
        except redis.RedisError as exc:
            raise redis_io_error(f"cannot read the pin of {version}", exc) from exc
        return None if record is None else self._decode(record)

    @staticmethod
    def _decode(record: Any) -> Checkpoint:
        try:
            return msgspec.json.decode(record, type=Checkpoint)
        except msgspec.DecodeError as exc:
            raise IntegrityError(f"a pin record is corrupt: {exc}") from exc
