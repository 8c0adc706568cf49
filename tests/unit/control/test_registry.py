"""Unit tests for checkpoint validation and hashing (no Redis)."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest

from streammon.control.registry import Checkpoint, check_checkpoint, hash_file, local_path
from streammon.errors import ConfigError

GOOD_HASH = "sha256:" + "a" * 64


def test_hash_file_is_sha256_of_the_bytes(tmp_path: Path) -> None:
    """hash_file returns sha256:<hex> of the file's content, across chunk boundaries."""
    data = b"weights" * 400_000
    path = tmp_path / "model.bin"
    path.write_bytes(data)
    assert hash_file(path) == "sha256:" + hashlib.sha256(data).hexdigest()


@pytest.mark.parametrize("content_hash", ["", "sha256:", "md5:" + "a" * 32, "sha256:" + "G" * 64])
def test_pin_refuses_missing_or_malformed_hash(content_hash: str) -> None:
    """A checkpoint without a well-formed sha256 hash is refused, naming the field."""
    checkpoint = Checkpoint(version="v1", weights_uri="s3://b/v1", content_hash=content_hash)
    with pytest.raises(ConfigError, match="content_hash"):
        check_checkpoint(checkpoint)


def test_check_checkpoint_names_empty_fields() -> None:
    """An empty version or weights URI is refused with the field's name."""
    with pytest.raises(ConfigError, match="version"):
        check_checkpoint(Checkpoint(version="", weights_uri="x", content_hash=GOOD_HASH))
    with pytest.raises(ConfigError, match="weights_uri"):
        check_checkpoint(Checkpoint(version="v1", weights_uri="", content_hash=GOOD_HASH))


def test_local_path_understands_file_and_plain_uris() -> None:
    """file:// and plain paths are local; s3:// and https:// are not."""
    assert local_path("file:///models/a%20b.bin") == Path("/models/a b.bin")
    assert local_path("/models/v1.bin") == Path("/models/v1.bin")
    assert local_path("s3://bucket/v1.bin") is None
    assert local_path("https://host/v1.bin") is None


class _ModelVersion:
    def __init__(self, version: str, tags: dict[str, str]) -> None:
        self.version, self.tags = version, tags
        self.source, self.run_id = f"runs:/abc/model-{version}", "abc"


def test_mlflow_version_maps_to_checkpoint_with_its_hash_tag() -> None:
    """An MLflow version's content_hash tag, URI and run id land in the checkpoint."""
    from streammon.control.mlflow_registry import checkpoint_from_model_version

    mv = _ModelVersion("7", {"content_hash": GOOD_HASH, "team": "fraud"})
    checkpoint = checkpoint_from_model_version("fraud", mv)
    assert (checkpoint.version, checkpoint.weights_uri) == ("fraud/7", "models:/fraud/7")
    assert checkpoint.content_hash == GOOD_HASH
    assert checkpoint.config == {"mlflow_run_id": "abc", "mlflow_source": "runs:/abc/model-7",
                                 "team": "fraud"}
    check_checkpoint(checkpoint)


def test_mlflow_version_without_hash_is_not_pinnable_unless_hashed() -> None:
    """With no hash tag the checkpoint fails the pin check; a given hasher fills it in."""
    from streammon.control.mlflow_registry import checkpoint_from_model_version

    bare = checkpoint_from_model_version("fraud", _ModelVersion("8", {}))
    with pytest.raises(ConfigError, match="content_hash"):
        check_checkpoint(bare)
    hashed = checkpoint_from_model_version("fraud", _ModelVersion("8", {}),
                                           compute_hash=lambda source: GOOD_HASH)
    check_checkpoint(hashed)


def test_mlflow_client_without_mlflow_says_how_to_install(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Without the mlflow package the adapter raises ConfigError instead of ImportError."""
    import sys

    from streammon.control.mlflow_registry import mlflow_client

    monkeypatch.setitem(sys.modules, "mlflow", None)
    with pytest.raises(ConfigError, match=r"pip install streammon\[mlflow\]"):
        mlflow_client()
