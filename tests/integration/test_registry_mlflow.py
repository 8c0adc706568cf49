"""The MLflow adapter pins what an alias points at and moves aliases to pinned versions
(Redis is real; the MLflow client is a stand-in with the same two methods)."""

from __future__ import annotations

import pytest
import redis

from streammon.control.mlflow_registry import MlflowPins
from streammon.control.registry import Registry
from streammon.errors import ConfigError, NotPinnedError

HASH = "sha256:" + "f" * 64


class _ModelVersion:
    def __init__(self, version: str, tags: dict[str, str]) -> None:
        self.version, self.tags, self.source, self.run_id = version, tags, "s3://m", "run"


class FakeMlflow:
    """Aliases of one registered model, as MLflow's client would report them."""

    def __init__(self, versions: dict[str, _ModelVersion], aliases: dict[str, str]) -> None:
        self.versions, self.aliases = versions, aliases

    def get_model_version_by_alias(self, name: str, alias: str) -> _ModelVersion:
        return self.versions[self.aliases[alias]]

    def set_registered_model_alias(self, name: str, alias: str, version: str) -> None:
        self.aliases[alias] = version


def test_pin_alias_then_point_alias_back_on_rollback(
    redis_client: redis.Redis, unique: str
) -> None:
    """The champion's version is pinned; after a rollback the alias points at it again."""
    model = f"m{unique}"
    fake = FakeMlflow({"3": _ModelVersion("3", {"content_hash": HASH}),
                       "4": _ModelVersion("4", {"content_hash": HASH})},
                      {"champion": "3", "challenger": "4"})
    pins = MlflowPins(Registry(redis_client), fake)
    baseline = pins.pin_alias(model, "champion")
    assert baseline.version == f"{model}/3"
    assert Registry(redis_client).get(f"{model}/3").weights_uri == f"models:/{model}/3"
    fake.aliases["champion"] = "4"  # someone promoted early
    pins.point_alias("champion", baseline.version)
    assert fake.aliases["champion"] == "3"


def test_unhashed_alias_is_refused_and_unpinned_cannot_be_pointed_at(
    redis_client: redis.Redis, unique: str
) -> None:
    """A version without a hash is not pinned, and point_alias needs an existing pin."""
    model = f"m{unique}"
    fake = FakeMlflow({"1": _ModelVersion("1", {})}, {"champion": "1"})
    pins = MlflowPins(Registry(redis_client), fake)
    with pytest.raises(ConfigError, match="content_hash"):
        pins.pin_alias(model, "champion")
    with pytest.raises(NotPinnedError):
        pins.point_alias("champion", f"{model}/1")
