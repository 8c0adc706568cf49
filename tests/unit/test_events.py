"""Event decoding: validation errors name the field; schemas in topics/ match the types."""

from __future__ import annotations

import json

import pytest

from streammon import events
from streammon.errors import EventError, StreamMonError
from streammon.kafka import topics

GOOD = {"request_id": "r1", "rollout_id": "ro", "model_version": "v1", "arm": "canary",
        "ts_ms": 5, "latency_ms": 3.5}


def test_valid_prediction_round_trips() -> None:
    """A valid prediction decodes, and encodes back to the same fields."""
    pred = events.decode(events.Prediction, json.dumps(GOOD))
    assert json.loads(events.encode(pred))["latency_ms"] == 3.5


@pytest.mark.parametrize(("field", "value", "where"), [
    ("latency_ms", -1.0, "$.latency_ms"),
    ("arm", "green", "$.arm"),
    ("ts_ms", "yesterday", "$.ts_ms"),
    ("request_id", "", "$.request_id"),
    ("score", 1.5, "$.score"),
])
def test_invalid_field_is_named(field: str, value: object, where: str) -> None:
    """A schema violation raises EventError (a ValueError) whose message names the field."""
    with pytest.raises(EventError) as info:
        events.decode(events.Prediction, json.dumps({**GOOD, field: value}))
    assert where in str(info.value)
    assert isinstance(info.value, ValueError) and isinstance(info.value, StreamMonError)


def test_outcome_needs_label_or_value() -> None:
    """An outcome with neither label nor value is rejected, naming the label field."""
    with pytest.raises(EventError, match=r"\$\.label"):
        events.decode(events.Outcome, b'{"request_id": "a", "rollout_id": "r", "ts_ms": 1}')


def test_unknown_schema_version_is_rejected() -> None:
    """An event from a future schema version is refused rather than misread."""
    with pytest.raises(EventError, match="v=2"):
        events.decode(events.Prediction, json.dumps({**GOOD, "v": 2}))


def test_malformed_json_is_an_event_error() -> None:
    """Bytes that are not JSON raise EventError saying so."""
    with pytest.raises(EventError, match="not valid JSON"):
        events.decode(events.Outcome, b"{nope")


def test_committed_schemas_match_the_types() -> None:
    """topics/schemas/*.schema.json equal what the msgspec types generate (no drift)."""
    for name, schema in topics.schema_documents().items():
        committed = json.loads((topics.SPEC_DIR / "schemas" / f"{name}.schema.json").read_text())
        assert committed == json.loads(json.dumps(schema, sort_keys=True)), name


def test_summary_key_is_deterministic() -> None:
    """A cohort summary's key depends only on its cell and source, so re-sends overwrite."""
    a = events.CohortSummary(rollout_id="r", window_start_ms=0, window_ms=1, segment="s",
                             arm="canary", source="p1", metrics={}, score_hist=[],
                             watermark_ms=1)
    b = events.CohortSummary(rollout_id="r", window_start_ms=0, window_ms=1, segment="s",
                             arm="canary", source="p1", metrics={}, score_hist=[1],
                             watermark_ms=99)
    assert a.key == b.key == "r|0|s|canary|p1"


def test_schema_descriptions_do_not_depend_on_docstring_layout() -> None:
    """Two docstrings that differ only in indentation give the same committed schema text."""
    from streammon.kafka.topics import _normalise_descriptions

    dedented = {"description": "One line.\n\nAnother line.", "properties": {
        "x": {"description": "field\n  help"}}}
    indented = {"description": "One line.\n\n    Another line.", "properties": {
        "x": {"description": "field\n        help"}}}
    assert _normalise_descriptions(dedented) == _normalise_descriptions(indented)
    assert _normalise_descriptions(indented)["description"] == "One line. Another line."


def test_one_cell_layout_from_the_wire_to_the_statistics() -> None:
    """The statistics' six arrays are the wire's sums per arm, and a summary names its cell."""
    from streammon.stats.cells import FIELDS

    assert events.SUMS == ("n", "sum", "sumsq")
    assert FIELDS == ("n_a", "sum_a", "sumsq_a", "n_b", "sum_b", "sumsq_b")
    s = events.CohortSummary(rollout_id="r", window_start_ms=60, window_ms=60, segment="s",
                             arm="baseline", source="p0", metrics={}, score_hist=[],
                             watermark_ms=1)
    assert s.cell == ("r", 60, "s", "baseline")
    assert s.key == events.summary_key(s.cell, "p0") == "r|60|s|baseline|p0"
