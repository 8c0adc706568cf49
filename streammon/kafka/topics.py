"""Declarative topic specs: load them from ``topics/``, apply them, check co-partitioning.

Each ``topics/<name>.json`` names a topic (under the configured prefix), its partition
count, cleanup policy, retention, key and the JSON Schema of its values (in
``topics/schemas/``, generated from :mod:`streammon.events` by
``streammon topics schemas``). ``apply_topics`` creates what is missing and reports
drift without changing existing topics, so running it twice is harmless.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import msgspec

from streammon import events
from streammon.config.settings import KafkaSettings, TopicNames
from streammon.errors import ConfigError, CoPartitionError, KafkaIOError, TopicError


def _spec_dir() -> Path:
    """Return topics/ of a source checkout, else the copy installed with the package."""
    package = Path(__file__).resolve().parent.parent
    checkout = package.parent / "topics"
    return checkout if checkout.is_dir() else package / "topic_specs"


SPEC_DIR = _spec_dir()
SCHEMA_TYPES: dict[str, type[msgspec.Struct]] = {
    "prediction": events.Prediction,
    "outcome": events.Outcome,
    "cohort_summary": events.CohortSummary,
    "command": events.Command,
    "diagnosis": events.Diagnosis,
    "rollback_report": events.RollbackReport,
    "prediction_batch": events.PredictionBatch,
    "outcome_batch": events.OutcomeBatch,
}


@dataclass(frozen=True, kw_only=True)
class TopicSpec:
    """One topic as it should be: name (without prefix), layout and contract."""

    name: str
    partitions: int
    cleanup_policy: str
    retention_ms: int
    key: str
    value_schema: str
    description: str = ""

    def full_name(self, names: TopicNames) -> str:
        """Return the topic name with the configured prefix."""
        return f"{names.prefix}{self.name}"

    def configs(self) -> dict[str, str]:
        """Return the Kafka topic configs this spec asks for."""
        return {"cleanup.policy": self.cleanup_policy, "retention.ms": str(self.retention_ms)}


_FIELDS = {"name", "partitions", "cleanup_policy", "retention_ms", "key", "value_schema"}


def load_specs(spec_dir: Path = SPEC_DIR) -> list[TopicSpec]:
    """Read every ``*.json`` spec in ``spec_dir``; raise ConfigError naming a bad field."""
    specs = []
    for path in sorted(spec_dir.glob("*.json")):
        raw: dict[str, Any] = json.loads(path.read_text())
        missing = _FIELDS - raw.keys()
        if missing:
            raise ConfigError(f"{path.name}: missing field(s) {sorted(missing)}")
        if not isinstance(raw["partitions"], int) or raw["partitions"] < 1:
            raise ConfigError(f"{path.name}: `partitions` must be an integer >= 1")
        specs.append(TopicSpec(**{k: v for k, v in raw.items() if not k.startswith("$")}))
    if not specs:
        raise ConfigError(f"no topic specs found in {spec_dir}")
    return specs


def schema_documents() -> dict[str, dict[str, Any]]:
    """Return the JSON Schema of every event type, generated from the msgspec types."""
    docs = {}
    for name, kind in SCHEMA_TYPES.items():
        schema = _normalise_descriptions(msgspec.json.schema(kind))
        schema["$id"] = f"streammon/{name}/v{events.SCHEMA_VERSION}"
        docs[name] = schema
    return docs


def _normalise_descriptions(node: Any) -> Any:
    """Collapse whitespace in docstring-derived ``description`` fields.

    msgspec copies class docstrings into the schema, and how it dedents them has changed
    between releases; collapsing runs of whitespace keeps the committed schemas identical
    whichever msgspec version generated them.
    """
    if isinstance(node, dict):
        return {key: (" ".join(value.split()) if key == "description" and isinstance(value, str)
                      else _normalise_descriptions(value)) for key, value in node.items()}
    if isinstance(node, list):
        return [_normalise_descriptions(item) for item in node]
    return node


def write_schemas(out_dir: Path = SPEC_DIR / "schemas") -> list[Path]:
    """Write the generated JSON Schemas to ``out_dir``; return the paths written."""
    out_dir.mkdir(parents=True, exist_ok=True)
    paths = []
    for name, schema in schema_documents().items():
        path = out_dir / f"{name}.schema.json"
        path.write_text(json.dumps(schema, indent=2, sort_keys=True) + "\n")
        paths.append(path)
    return paths


def _admin(kafka: KafkaSettings) -> Any:
    from confluent_kafka.admin import AdminClient

    from streammon.kafka.topic_reader import quiet_kafka_logger

    return AdminClient(kafka.to_librdkafka(logger=quiet_kafka_logger("streammon.kafka.admin")))


def existing_partitions(kafka: KafkaSettings, timeout_s: float = 10.0) -> dict[str, int]:
    """Return {topic: partition count} for every topic the cluster has."""
    from confluent_kafka import KafkaException

    try:
        md = _admin(kafka).list_topics(timeout=timeout_s)
    except KafkaException as exc:
        raise KafkaIOError(f"cannot list topics at {kafka.bootstrap_servers}: {exc}") from exc
    return {name: len(t.partitions) for name, t in md.topics.items() if not t.error}


def apply_topics(
    kafka: KafkaSettings, names: TopicNames, specs: list[TopicSpec] | None = None,
    *, timeout_s: float = 15.0,
) -> dict[str, str]:
    """Create missing topics; return {topic: "created" | "ok" | "drift: ..."}."""
    from confluent_kafka import KafkaException
    from confluent_kafka.admin import NewTopic  # type: ignore[attr-defined]

    specs = load_specs() if specs is None else specs
    have = existing_partitions(kafka)
    report: dict[str, str] = {}
    to_create = []
    for spec in specs:
        topic = spec.full_name(names)
        if topic not in have:
            to_create.append(NewTopic(topic, spec.partitions, 1, config=spec.configs()))
        elif have[topic] != spec.partitions:
            report[topic] = f"drift: {have[topic]} partitions, spec says {spec.partitions}"
        else:
            report[topic] = "ok"
    if to_create:
        admin = _admin(kafka)  # keep the handle alive until every future resolves
        for topic, fut in admin.create_topics(to_create, request_timeout=timeout_s).items():
            try:
                fut.result(timeout=timeout_s)
                report[topic] = "created"
            except KafkaException as exc:
                if "already exists" not in str(exc).lower():
                    raise KafkaIOError(f"cannot create topic {topic}: {exc}") from exc
                report[topic] = "ok"
    return report


def check_copartitioned(kafka: KafkaSettings, names: TopicNames) -> int:
    """Return the shared partition count of predictions and outcomes, or raise.

    The join needs both sides of a request on the same worker, so both topics must be
    keyed by request_id and have the same number of partitions.
    """
    have = existing_partitions(kafka)
    for topic in (names.predictions, names.outcomes):
        if topic not in have:
            raise TopicError(f"topic {topic} does not exist: run `streammon topics apply`")
    p, o = have[names.predictions], have[names.outcomes]
    if p != o:
        raise CoPartitionError(
            f"{names.predictions} has {p} partitions but {names.outcomes} has {o}: the join "
            "needs both keyed by request_id with the same partition count; recreate one of them"
        )
    return p
