"""The public API of ``streammon``: the names behind ``__all__`` and where they come from."""

from __future__ import annotations

import subprocess
import sys

import streammon

PUBLIC = ["Command", "KafkaSettings", "Outcome", "Prediction", "Publisher", "RedisSettings",
          "RolloutSpec", "Router", "Settings", "StreamMonError", "TopicNames", "errors",
          "events", "replay"]


def test_all_is_pinned() -> None:
    """``streammon.__all__`` lists exactly the public names, sorted."""
    assert streammon.__all__ == PUBLIC


def test_every_public_name_resolves_to_its_home() -> None:
    """Each name in ``__all__`` resolves, and the lazy ones are the SDK classes."""
    from streammon.sdk.publisher import Publisher
    from streammon.sdk.router import Router

    for name in streammon.__all__:
        assert getattr(streammon, name) is not None
    assert streammon.Publisher is Publisher and streammon.Router is Router


def test_importing_streammon_loads_no_io_client() -> None:
    """``import streammon`` loads neither confluent_kafka nor redis until the SDK is used."""
    code = ("import sys, streammon\n"
            "print(sorted(m for m in ('confluent_kafka', 'redis') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"
