"""Optional MLflow Model Registry adapter: pin what an alias points at, move aliases back.

MLflow is not a dependency: :func:`mlflow_client` imports it only when called, and the
adapter accepts any object with MLflow's two client methods used here
(``get_model_version_by_alias`` and ``set_registered_model_alias``), so it is tested
without MLflow installed.

Mapping (one pin per MLflow model version):

- pin ``version`` -> ``"{model_name}/{mlflow version}"`` (e.g. ``fraud/7``);
- ``weights_uri`` -> ``models:/{model_name}/{mlflow version}``;
- ``content_hash`` -> the model version's ``content_hash`` tag (``sha256:<hex>``), or
  what ``compute_hash(source)`` returns; with neither the pin is refused, as any pin is;
- ``config`` -> ``mlflow_run_id``, ``mlflow_source`` and the other tags.

After a rollout, :meth:`MlflowPins.point_alias` moves an alias (``champion`` say) to the
version the traffic now goes to: the candidate on promote, the baseline on rollback.

A registry that is down or refuses (any error from the client) raises
:class:`~streammon.errors.RegistryError` naming the model and alias; the pins already in
Redis are untouched, so rollbacks to them keep working without MLflow.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Protocol

from streammon.control.registry import Checkpoint, Registry
from streammon.errors import ConfigError, RegistryError, StreamMonError

HASH_TAG = "content_hash"


class MlflowClientLike(Protocol):
    """The two ``mlflow.MlflowClient`` methods the adapter uses."""

    def get_model_version_by_alias(self, name: str, alias: str) -> Any:
        """Return the ModelVersion an alias points at."""

    def set_registered_model_alias(self, name: str, alias: str, version: str) -> None:
        """Point ``alias`` of model ``name`` at ``version``."""


def mlflow_client(tracking_uri: str | None = None) -> MlflowClientLike:
    """Return an ``mlflow.MlflowClient``; raise ConfigError if MLflow is not installed."""
    try:
        from mlflow import MlflowClient
    except ImportError as exc:
        raise ConfigError("the MLflow adapter needs `pip install streammon[mlflow]`") from exc
    client: MlflowClientLike = MlflowClient(tracking_uri=tracking_uri)
    return client


def pin_version(model_name: str, mlflow_version: str) -> str:
    """Return the streammon pin name of an MLflow model version."""
    return f"{model_name}/{mlflow_version}"


def checkpoint_from_model_version(
    model_name: str, model_version: Any, *, compute_hash: Callable[[str], str] | None = None
) -> Checkpoint:
    """Map an MLflow ModelVersion to a Checkpoint (not yet pinned)."""
    tags = dict(getattr(model_version, "tags", None) or {})
    content_hash = tags.pop(HASH_TAG, "")
    source = str(getattr(model_version, "source", "") or "")
    if not content_hash and compute_hash is not None:
        content_hash = compute_hash(source)
    config = {"mlflow_run_id": str(getattr(model_version, "run_id", "") or ""),
              "mlflow_source": source, **tags}
    return Checkpoint(
        version=pin_version(model_name, str(model_version.version)),
        weights_uri=f"models:/{model_name}/{model_version.version}",
        content_hash=content_hash,
        config=config,
    )


class MlflowPins:
    """Pin MLflow model versions by alias, and point aliases at pinned versions."""

    def __init__(self, registry: Registry, client: MlflowClientLike) -> None:
        """Use ``registry`` for pins and ``client`` (see :func:`mlflow_client`) for MLflow."""
        self.registry = registry
        self.client = client

    def pin_alias(
        self, model_name: str, alias: str, *, compute_hash: Callable[[str], str] | None = None
    ) -> Checkpoint:
        """Pin the version ``alias`` points at now; ConfigError if it carries no hash."""
        try:
            model_version = self.client.get_model_version_by_alias(model_name, alias)
        except StreamMonError:
            raise
        except Exception as exc:  # MLflow, HTTP and database errors alike
            raise RegistryError(f"MLflow: cannot read alias {alias!r} of {model_name!r}: "
                                f"{exc}") from exc
        checkpoint = checkpoint_from_model_version(
            model_name, model_version, compute_hash=compute_hash
        )
        return self.registry.pin(checkpoint)

    def point_alias(self, alias: str, pinned_version: str) -> None:
        """Point ``alias`` at a pinned ``model/version`` (NotPinnedError if it is not pinned)."""
        checkpoint = self.registry.require_pinned(pinned_version)
        model_name, _, mlflow_version = checkpoint.version.rpartition("/")
        if not model_name:
            raise ConfigError(f"{pinned_version} is not an MLflow pin (want model/version)")
        try:
            self.client.set_registered_model_alias(model_name, alias, mlflow_version)
        except Exception as exc:  # MLflow, HTTP and database errors alike
            raise RegistryError(f"MLflow: cannot point alias {alias!r} of {model_name!r} "
                                f"at {mlflow_version}: {exc}") from exc
