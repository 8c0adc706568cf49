"""The Faust worker gets the same Kafka security settings as the librdkafka clients."""

from __future__ import annotations

import faust
import pytest

from streammon.app.credentials import faust_credentials
from streammon.errors import ConfigError


def test_plaintext_needs_no_credentials() -> None:
    """Without a security protocol the worker connects in plaintext."""
    assert faust_credentials({}) is None


def test_sasl_ssl_maps_user_password_mechanism_and_tls() -> None:
    """SASL_SSL options become SASL credentials with the mechanism and a TLS context."""
    creds = faust_credentials({"security.protocol": "SASL_SSL", "sasl.mechanism": "SCRAM-SHA-512",
                               "sasl.username": "svc", "sasl.password": "pw"})
    assert isinstance(creds, faust.SASLCredentials)
    assert (creds.username, creds.password, str(creds.mechanism.value)) == (
        "svc", "pw", "SCRAM-SHA-512")
    assert creds.ssl_context is not None


def test_sasl_without_a_user_names_the_missing_option() -> None:
    """SASL without sasl.username fails with an error naming the option."""
    with pytest.raises(ConfigError, match=r"sasl\.username"):
        faust_credentials({"security.protocol": "SASL_PLAINTEXT"})


def test_unknown_protocol_is_refused() -> None:
    """A misspelt security.protocol is refused rather than silently ignored."""
    with pytest.raises(ConfigError, match=r"security\.protocol"):
        faust_credentials({"security.protocol": "TLS"})
