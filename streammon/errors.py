"""The one exception tree of streammon.

Every error streammon raises on purpose derives from :class:`StreamMonError`, and also
from the stdlib type a caller would naturally catch, so ``except ValueError`` keeps
working for bad input::

    StreamMonError
    ├── ConfigError(ValueError)            bad settings, rollout spec or CLI arguments
    ├── EventError(ValueError)             an event that fails its schema
    ├── TopicError                          topic layout wrong (partitions, drift)
    │   └── CoPartitionError                predictions/outcomes partition counts differ
    ├── StackError(RuntimeError)           the embedded broker / Redis did not come up
    ├── KafkaIOError(ConnectionError)      a librdkafka error, original kept as __cause__
    ├── RedisIOError(ConnectionError)      a Redis error, original kept as __cause__
    ├── RegistryError                       pinning problems
    │   ├── NotPinnedError(LookupError)    a rollout whose baseline is not pinned
    │   └── IntegrityError                  a pinned checkpoint whose hash does not verify
    ├── CommandError(ValueError)           a control command that is unsigned, forged or stale
    └── StatsInputError(ValueError)        bad arrays or parameters for streammon.stats
                                            (defined in streammon/stats/cells.py)
"""

from __future__ import annotations


class StreamMonError(Exception):
    """Root of every error streammon raises on purpose."""


class ConfigError(StreamMonError, ValueError):
    """Settings, a rollout spec or CLI arguments are invalid; the message names the field."""


class EventError(StreamMonError, ValueError):
    """An event does not match its schema; the message names the field and the fix."""


class TopicError(StreamMonError):
    """The cluster's topics do not match the specs in ``topics/``."""


class CoPartitionError(TopicError):
    """Predictions and outcomes do not have the same number of partitions."""


class StackError(StreamMonError, RuntimeError):
    """The embedded development stack could not be started or found."""


class KafkaIOError(StreamMonError, ConnectionError):
    """A Kafka client call failed; the librdkafka error is the ``__cause__``."""


class RedisIOError(StreamMonError, ConnectionError):
    """A Redis call failed; the redis-py error is the ``__cause__``."""


class RegistryError(StreamMonError):
    """A problem with pinned checkpoints."""


class NotPinnedError(RegistryError, LookupError):
    """A rollout was started, or rolled back, without a pinned baseline."""


class IntegrityError(RegistryError):
    """A pinned checkpoint's content hash does not verify."""


class CommandError(StreamMonError, ValueError):
    """A control command is unsigned, forged or older than what is already applied."""
