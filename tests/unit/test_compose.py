"""docker-compose.yml: the services the docs promise, Kafka in KRaft mode, a valid file."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
COMPOSE = ROOT / "docker-compose.yml"
EXPECTED = {"kafka", "redis", "topics", "worker", "actuator", "traffic"}


def service_blocks(text: str) -> dict[str, str]:
    """Split the top-level `services:` mapping into {name: indented block} (no YAML lib)."""
    body = text.split("\nservices:\n", 1)[1]
    body = re.split(r"\n(?=\S)", body, maxsplit=1)[0]  # up to the next top-level key
    parts = re.split(r"^  ([A-Za-z0-9_-]+):\s*$", body, flags=re.MULTILINE)
    return {parts[i]: parts[i + 1] for i in range(1, len(parts) - 1, 2)}


def docs_services() -> set[str]:
    """Return the services named in the Compose table of docs/operations.md."""
    text = (ROOT / "docs" / "operations.md").read_text()
    section = text.split("## Compose", 1)[1].split("\n## ", 1)[0]
    return set(re.findall(r"^\| `([a-z0-9_-]+)` \|", section, flags=re.MULTILINE))


def test_compose_has_every_service_the_docs_mention() -> None:
    """Every service in the docs' Compose table is defined, and nothing else is."""
    services = set(service_blocks(COMPOSE.read_text()))
    assert services == EXPECTED
    assert docs_services() == services


def test_kafka_is_the_official_image_in_kraft_mode() -> None:
    """Kafka runs from apache/kafka as broker+controller with a controller quorum."""
    kafka = service_blocks(COMPOSE.read_text())["kafka"]
    assert re.search(r"image: apache/kafka:\d", kafka)
    assert "KAFKA_PROCESS_ROLES: broker,controller" in kafka
    assert "KAFKA_CONTROLLER_QUORUM_VOTERS:" in kafka and "zookeeper" not in kafka.lower()


def test_topics_are_created_before_the_worker_and_actuator_start() -> None:
    """The one-shot topics service runs `topics apply`; worker and actuator wait for it."""
    blocks = service_blocks(COMPOSE.read_text())
    assert 'command: ["topics", "apply"]' in blocks["topics"]
    for name in ("worker", "actuator"):
        assert re.search(r"topics:\s+condition: service_completed_successfully", blocks[name])


def test_host_ports_bind_loopback_only() -> None:
    """Every published port is bound to 127.0.0.1."""
    ports = re.findall(r'^\s+- "([^"]+)"$', COMPOSE.read_text(), flags=re.MULTILINE)
    assert ports and all(p.startswith("127.0.0.1:") for p in ports)


def _compose_cli() -> list[str] | None:
    if shutil.which("docker") and subprocess.run(["docker", "compose", "version"],
                                                 capture_output=True).returncode == 0:
        return ["docker", "compose"]
    if shutil.which("docker-compose"):
        return ["docker-compose"]
    return None


@pytest.mark.skipif(_compose_cli() is None, reason="no docker compose client installed")
def test_docker_compose_config_accepts_the_file() -> None:
    """`docker compose config` parses the file and sees the same services."""
    cli = _compose_cli()
    assert cli is not None
    out = subprocess.run([*cli, "-f", str(COMPOSE), "config", "--format", "json"],
                         capture_output=True, text=True, timeout=60, check=True)
    assert set(json.loads(out.stdout)["services"]) == EXPECTED


def test_yaml_parse_merges_the_shared_streammon_settings() -> None:
    """With PyYAML present, the file parses and every streammon service inherits the
    shared environment (Kafka and Redis addresses) through the YAML merge key."""
    yaml = pytest.importorskip("yaml")
    doc = yaml.safe_load(COMPOSE.read_text())
    assert set(doc["services"]) == EXPECTED
    for name in ("topics", "worker", "actuator", "traffic"):
        env = doc["services"][name]["environment"]
        assert env["STREAMMON_KAFKA_BOOTSTRAP"] == "kafka:9092"
        assert env["STREAMMON_REDIS_URL"].startswith("redis://redis:")
        assert doc["services"][name]["image"] == "streammon:dev"
