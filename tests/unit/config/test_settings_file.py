"""The settings file: TOML plus STREAMMON_* overrides, and check_config's explanations."""

from __future__ import annotations

from pathlib import Path

import pytest

from streammon.config.settings import Settings
from streammon.config.settings_file import check_config, load_settings
from streammon.control.keys import new_key
from streammon.errors import ConfigError

GOOD = """
app_id = "streammon-prod"
web_port = 6070
[kafka]
bootstrap_servers = "k1:9092,k2:9092"
[kafka.options]
"security.protocol" = "SASL_SSL"
"sasl.mechanisms" = "PLAIN"
"sasl.username" = "svc"
"enable.idempotence" = true
[redis]
url = "rediss://redis:6380/0"
[redis.options]
ssl_ca_certs = "/etc/ssl/ca.pem"
socket_timeout = 5.0
[topics]
prefix = "prod."
"""


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "streammon.toml"
    path.write_text(text)
    return path


def test_file_values_and_client_options_pass_through(tmp_path: Path) -> None:
    """Every section of the file lands in Settings; client options pass through verbatim
    (librdkafka values as strings, booleans lower-case)."""
    s = load_settings(write(tmp_path, GOOD), env={})
    assert s.kafka.bootstrap_servers == "k1:9092,k2:9092"
    assert s.kafka.options == {"security.protocol": "SASL_SSL", "sasl.mechanisms": "PLAIN",
                               "sasl.username": "svc", "enable.idempotence": "true"}
    assert s.kafka.to_librdkafka()["security.protocol"] == "SASL_SSL"
    assert s.redis.url == "rediss://redis:6380/0"
    assert s.redis.to_redis()["ssl_ca_certs"] == "/etc/ssl/ca.pem"
    assert s.redis.to_redis()["socket_timeout"] == 5.0
    assert (s.topics.prefix, s.app_id, s.web_port) == ("prod.", "streammon-prod", 6070)


def test_environment_overrides_the_file(tmp_path: Path) -> None:
    """STREAMMON_* variables win over the file, including per-option overrides."""
    keys = tmp_path / "keys"
    new_key("operator", keys)
    env = {"STREAMMON_CONFIG": str(write(tmp_path, GOOD)),
           "STREAMMON_KAFKA_BOOTSTRAP": "other:9092", "STREAMMON_KEY_DIR": str(keys),
           "STREAMMON_FAST_GROUP_JOIN": "1", "STREAMMON_KAFKA_OPT_SASL_USERNAME": "alice",
           "STREAMMON_REDIS_OPT_SOCKET_TIMEOUT": "2.5", "STREAMMON_WEB_PORT": "7000"}
    s = load_settings(env=env)
    assert s.kafka.bootstrap_servers == "other:9092" and s.kafka.fast_group_join
    assert s.kafka.options["sasl.username"] == "alice"  # the variable beats the file
    assert s.kafka.options["security.protocol"] == "SASL_SSL"
    assert s.redis.options["socket_timeout"] == 2.5
    assert list(s.keys.signing) == ["operator"] and s.web_port == 7000


def test_no_file_keeps_the_base_settings() -> None:
    """Without a file or variables, load_settings returns the base settings unchanged."""
    base = Settings(app_id="from-base")
    assert load_settings(env={}, base=base) == base


def test_check_config_accepts_a_good_file_with_its_secret_from_the_environment(
    tmp_path: Path,
) -> None:
    """librdkafka accepts the options once the environment supplies the SASL password, and
    says what is missing without it."""
    path = write(tmp_path, GOOD)
    assert check_config(path, env={"STREAMMON_KAFKA_OPT_SASL_PASSWORD": "pw"}) == []
    missing = check_config(path, env={})
    assert len(missing) == 1 and "sasl.password" in missing[0]


def test_check_config_explains_unknown_keys_with_did_you_mean(tmp_path: Path) -> None:
    """Misspelt keys, sections and Redis options are named with the closest known key."""
    problems = check_config(write(tmp_path, """
key_dri = "x"
[kafka]
bootstrap_server = "k:9092"
[redis.options]
socket_timout = 1.0
[topic]
prefix = "p."
"""))
    text = "\n".join(problems)
    assert "unknown key `key_dri`: did you mean `key_dir`?" in text
    assert "unknown key `kafka.bootstrap_server`: did you mean `bootstrap_servers`?" in text
    assert "`redis.options.socket_timout`: did you mean `socket_timeout`?" in text
    assert "unknown key `topic`: did you mean `topics`?" in text
    assert len(problems) == 4


def test_check_config_explains_wrong_types_and_the_fix(tmp_path: Path) -> None:
    """A wrong type names the field, what it must be and an example of the fix."""
    problems = check_config(write(tmp_path, """
web_port = "6066"
kafka = "k:9092"
[redis]
url = 6379
"""))
    text = "\n".join(problems)
    assert "`web_port` must be an integer port, got a value of type str" in text
    assert "web_port = 6066" in text
    assert "`kafka` must be a table: write it as [kafka]" in text
    assert "`redis.url` must be a redis:// or rediss:// URL, got a value of type int" in text


def test_type_errors_never_echo_the_value(tmp_path: Path) -> None:
    """A mistyped value (maybe a secret in the wrong place) is described, never printed."""
    problems = check_config(write(tmp_path, 'app_id = 987654321\n[redis]\nurl = 31337.5\n'))
    text = "\n".join(problems)
    assert "app_id" in text and "redis.url" in text
    assert "987654321" not in text and "31337" not in text


def test_check_config_asks_librdkafka_about_kafka_options(tmp_path: Path) -> None:
    """An unknown librdkafka property is reported with librdkafka's own message."""
    problems = check_config(write(tmp_path, '[kafka.options]\n"sasl.usernme" = "a"\n'), env={})
    assert len(problems) == 1 and "sasl.usernme" in problems[0]


def test_syntax_error_names_the_line_and_load_refuses(tmp_path: Path) -> None:
    """A TOML syntax error is reported with its line; load_settings raises ConfigError."""
    path = write(tmp_path, 'app_id = "a"\n[kafka\n')
    assert "line 2" in check_config(path)[0]
    with pytest.raises(ConfigError, match="not valid TOML"):
        load_settings(path, env={})
    with pytest.raises(ConfigError, match="key_dri"):
        load_settings(write(tmp_path, 'key_dri = "x"\n'), env={})
