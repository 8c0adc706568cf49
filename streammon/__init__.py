"""streammon: safe model rollouts.

Serving nodes publish predictions and outcomes; streammon joins them by request id into
per-arm cohort windows, tests the canary against the baseline with anytime-valid
sequential tests on matched cohorts, and sends ``step``, ``promote`` or ``rollback``
commands that routers apply within a second.

:class:`Publisher` and :class:`Router` load on first use, so importing ``streammon`` (or
one of its pure packages) loads neither Kafka nor Redis.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from streammon import errors, events
from streammon.config.settings import KafkaSettings, RedisSettings, Settings, TopicNames
from streammon.errors import StreamMonError
from streammon.events import Command, Outcome, Prediction, RolloutSpec
from streammon.stats import replay

if TYPE_CHECKING:
    from streammon.sdk.publisher import Publisher
    from streammon.sdk.router import Router

__all__ = [
    "Command",
    "KafkaSettings",
    "Outcome",
    "Prediction",
    "Publisher",
    "RedisSettings",
    "RolloutSpec",
    "Router",
    "Settings",
    "StreamMonError",
    "TopicNames",
    "errors",
    "events",
    "replay",
]
__version__ = "0.1.0"

_LAZY = {"Publisher": "streammon.sdk.publisher", "Router": "streammon.sdk.router"}


def __getattr__(name: str) -> Any:
    """Load :class:`Publisher` and :class:`Router` (and their I/O clients) on first use."""
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'streammon' has no attribute {name!r}")
