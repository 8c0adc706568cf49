"""streammon: safe model rollouts.

Serving nodes publish predictions and outcomes; streammon joins them by request id into
per-arm cohort windows, tests the canary against the baseline with anytime-valid
sequential tests on matched cohorts, and sends ``step``, ``promote`` or ``rollback``
commands that routers apply within a second.
"""

from streammon.config import KafkaSettings, RedisSettings, Settings, TopicNames
from streammon.errors import StreamMonError
from streammon.events import Command, Outcome, Prediction, RolloutSpec

__all__ = [
    "Command",
    "KafkaSettings",
    "Outcome",
    "Prediction",
    "RedisSettings",
    "RolloutSpec",
    "Settings",
    "StreamMonError",
    "TopicNames",
]
__version__ = "0.1.0"
