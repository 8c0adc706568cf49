"""The one STREAMMON_* table: both readers parse alike, and every variable round-trips."""

from __future__ import annotations

from pathlib import Path

import pytest

from streammon.config.env import ENV_VARS, settings_from_env, settings_to_env
from streammon.config.settings import Settings
from streammon.config.settings_file import load_settings
from streammon.errors import ConfigError


@pytest.mark.parametrize(("text", "expected"), [("1", True), ("true", True), ("YES", True),
                                                ("0", False), ("no", False)])
def test_fast_group_join_reads_the_same_everywhere(tmp_path: Path, text: str,
                                                   expected: bool) -> None:
    """settings_from_env and load_settings parse STREAMMON_FAST_GROUP_JOIN identically."""
    env = {"STREAMMON_FAST_GROUP_JOIN": text, "STREAMMON_DATA_DIR": str(tmp_path)}
    assert settings_from_env(env).kafka.fast_group_join is expected
    assert load_settings(env=env).kafka.fast_group_join is expected


def test_settings_to_env_writes_every_variable_of_the_table(tmp_path: Path) -> None:
    """A child's environment names every variable of ENV_VARS and reads back the same."""
    s = Settings(web_port=6070, data_dir=str(tmp_path), app_id="a1")
    env = settings_to_env(s)
    assert set(env) == set(ENV_VARS)
    assert settings_from_env(env) == s


def test_bad_web_port_names_the_variable(tmp_path: Path) -> None:
    """A non-integer STREAMMON_WEB_PORT is refused with the variable's name."""
    with pytest.raises(ConfigError, match="STREAMMON_WEB_PORT must be an integer"):
        settings_from_env({"STREAMMON_WEB_PORT": "http", "STREAMMON_DATA_DIR": str(tmp_path)})
