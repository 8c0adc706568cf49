"""The Faust app leaves nothing in the directory a worker was started in."""

from __future__ import annotations

from pathlib import Path

import pytest

from streammon.app import create_app
from streammon.config.settings import Settings
from streammon.join.state import JoinConfig


def test_faust_data_dir_is_private_and_outside_the_working_directory(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Faust's data dir is a fresh temporary directory, not ``{app_id}-data`` in the cwd."""
    monkeypatch.chdir(tmp_path)
    settings = Settings(app_id="streammon-cwd-check")
    first = create_app(settings, join_config=JoinConfig(), partitions=1, decide=False)
    second = create_app(settings, join_config=JoinConfig(), partitions=1, decide=False)
    first_dir, second_dir = Path(first.app.conf.datadir), Path(second.app.conf.datadir)
    assert first_dir != second_dir
    assert first_dir.is_dir() and tmp_path not in first_dir.parents
    assert list(tmp_path.iterdir()) == []
