"""The MLflow adapter against a real MLflow Model Registry (local SQLite backend).

``mlflow`` stays an optional extra for users (``pip install streammon[mlflow]``); the dev
lock carries ``mlflow-skinny`` with ``sqlalchemy`` and ``alembic``, which is enough to host a
SQLite model registry, so these tests always run (a missing package fails, never skips).
"""

from __future__ import annotations

import time
from pathlib import Path

import mlflow
import pytest
import redis

from streammon.control.mlflow_registry import MlflowPins, mlflow_client
from streammon.control.registry import Registry
from streammon.devstack import free_port
from streammon.errors import RegistryError

HASH = "sha256:" + "9" * 64


# MLflow's SQLite store trips SQLAlchemy deprecation warnings of its own
pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")


@pytest.fixture
def real_mlflow(tmp_path: Path) -> object:
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    client = mlflow.MlflowClient(tracking_uri=uri, registry_uri=uri)
    return client


def test_pin_by_alias_and_roll_back_to_the_pinned_version(
    real_mlflow: object, redis_client: redis.Redis, unique: str
) -> None:
    """The champion (v1) is pinned; after v2 is promoted and then rolled back, the alias
    points at the pinned v1 again in the real registry."""
    client = real_mlflow
    name = f"model-{unique}"
    client.create_registered_model(name)  # type: ignore[attr-defined]
    for _ in range(2):
        client.create_model_version(name, source=f"file:///models/{name}",  # type: ignore[attr-defined]
                                    tags={"content_hash": HASH})
    client.set_registered_model_alias(name, "champion", "1")  # type: ignore[attr-defined]
    pins = MlflowPins(Registry(redis_client), client)  # type: ignore[arg-type]
    pinned = pins.pin_alias(name, "champion")
    assert pinned.version == f"{name}/1" and pinned.weights_uri == f"models:/{name}/1"
    client.set_registered_model_alias(name, "champion", "2")  # type: ignore[attr-defined]
    pins.point_alias("champion", f"{name}/1")
    assert str(client.get_model_version_by_alias(name, "champion").version) == "1"  # type: ignore[attr-defined]


def test_a_registry_that_is_down_is_a_clear_error_and_pins_stay(
    redis_client: redis.Redis, unique: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """An MLflow server that does not answer raises RegistryError naming the alias, fast,
    and leaves the pins in Redis as they were."""
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "0")
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_TIMEOUT", "2")
    down = mlflow_client(f"http://127.0.0.1:{free_port()}")
    registry = Registry(redis_client)
    before = len(registry.history())
    started = time.monotonic()
    with pytest.raises(RegistryError, match="champion"):
        MlflowPins(registry, down).pin_alias(f"model-{unique}", "champion")
    assert time.monotonic() - started < 30
    assert len(registry.history()) == before
