"""Kafka security options for the Faust worker, from the librdkafka-style options.

Every other streammon process talks to Kafka through librdkafka and takes
``KafkaSettings.options`` as they are; Faust uses aiokafka, which wants credentials
objects instead. :func:`faust_credentials` maps the usual librdkafka keys
(``security.protocol``, ``sasl.mechanism``, ``sasl.username``, ``sasl.password``,
``ssl.ca.location``, ``ssl.certificate.location``, ``ssl.key.location``,
``ssl.key.password``) so one configuration serves both.
"""

from __future__ import annotations

import ssl
from collections.abc import Mapping
from typing import Any

from streammon.errors import ConfigError


def ssl_context(options: Mapping[str, str]) -> ssl.SSLContext:
    """Return a client TLS context from ``ssl.*`` options (system CAs by default)."""
    context = ssl.create_default_context(cafile=options.get("ssl.ca.location"))
    cert = options.get("ssl.certificate.location")
    if cert:
        context.load_cert_chain(cert, options.get("ssl.key.location"),
                                options.get("ssl.key.password"))
    return context


def faust_credentials(options: Mapping[str, str]) -> Any | None:
    """Return Faust broker credentials for ``options``, or None for plaintext."""
    import faust

    protocol = options.get("security.protocol", "PLAINTEXT").upper()
    if protocol == "PLAINTEXT":
        return None
    if protocol not in ("SSL", "SASL_PLAINTEXT", "SASL_SSL"):
        raise ConfigError(f"kafka option security.protocol={protocol!r} is not one of "
                          "PLAINTEXT, SSL, SASL_PLAINTEXT, SASL_SSL")
    context = ssl_context(options) if protocol in ("SSL", "SASL_SSL") else None
    if protocol == "SSL":
        return faust.SSLCredentials(context)
    if "sasl.username" not in options:
        raise ConfigError(f"security.protocol={protocol} needs kafka option sasl.username "
                          "(and sasl.password)")
    return faust.SASLCredentials(username=options["sasl.username"],
                                 password=options.get("sasl.password"), ssl_context=context,
                                 mechanism=options.get("sasl.mechanism", "PLAIN"))
