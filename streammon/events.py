# ruff: noqa: RUF002  (formulas use Greek letters and math signs)
"""PURE: the events that travel on streammon's topics: frozen types, JSON codecs, versions.

Every value is JSON with a schema in ``topics/`` and carries its schema version in
``v``. Decoding validates: a bad event raises :class:`~streammon.errors.EventError`
whose message names the field (``$.latency_ms``) and what was expected. The types are
msgspec ``Struct`` s, so decoding and validation happen in one fast pass.
"""

from __future__ import annotations

import math
from enum import StrEnum
from typing import Annotated, Any, Literal, TypeVar

import msgspec

from streammon.errors import EventError

SCHEMA_VERSION = 1
ARMS = ("baseline", "canary")

Arm = Literal["baseline", "canary"]
MetricName = Literal["label", "value", "latency_ms", "error", "timeout"]
Kind = Literal["binary", "continuous", "count"]
"""How a metric's values are tested: 0/1 outcomes, real values, or event counts."""
BadDirection = Literal["decrease", "increase"]
"""Which way a metric moves when users are hurt."""
PREDICTION_METRICS = ("latency_ms", "error", "timeout")
"""Metrics a prediction carries on its own (known before its outcome, guardable in shadow)."""
OUTCOME_METRICS = ("label", "value")
"""Metrics its outcome brings (known only after the join)."""
Action = Literal["start", "step", "promote", "rollback", "hold", "resume"]
"""What a control command does; the one action vocabulary (phases: control.commands.PHASES)."""
Decision = Action | Literal["continue"]
"""What the decider concludes after a window: a command's action, or ``continue``."""
NonEmpty = Annotated[str, msgspec.Meta(min_length=1, max_length=256)]
TimestampMs = Annotated[int, msgspec.Meta(ge=0)]
NonNegative = Annotated[float, msgspec.Meta(ge=0.0)]
Probability = Annotated[float, msgspec.Meta(ge=0.0, le=1.0)]


class Prediction(msgspec.Struct, frozen=True, kw_only=True):
    """What a model answered for one request, published by the serving node.

    ``shadow`` marks a mirrored prediction of the candidate that was computed but not
    served (blue-green shadow validation); publish it under its own request id, e.g.
    ``<request_id>~shadow``, since the served prediction already uses the plain one.
    """

    v: int = SCHEMA_VERSION
    request_id: NonEmpty
    rollout_id: NonEmpty
    model_version: NonEmpty
    arm: Arm
    ts_ms: TimestampMs
    segment: NonEmpty = "all"
    unit_id: str | None = None
    score: Probability | None = None
    latency_ms: NonNegative | None = None
    error: bool = False
    timeout: bool = False
    """The request hit the serving timeout (also an error, if the node says so): counted
    by the ``timeout`` metric, a binary metric of its own."""
    covariate: float | None = None
    """A pre-exposure covariate for variance reduction (CUPED): the *baseline* model's
    score computed on every request whatever the arm, or the unit's metric before the
    rollout — never the candidate's own score. See docs/statistics.md."""
    weights_seq: int | None = None
    shadow: bool = False


class Outcome(msgspec.Struct, frozen=True, kw_only=True):
    """What actually happened for one request (ground truth), possibly much later.

    ``label`` is a binary outcome (0 or 1: converted, clicked, correct); ``value`` a
    continuous one (revenue, dwell time). At least one of them must be present.
    """

    v: int = SCHEMA_VERSION
    request_id: NonEmpty
    rollout_id: NonEmpty
    ts_ms: TimestampMs
    label: Probability | None = None
    value: float | None = None
    unit_id: str | None = None
    """The unit of the prediction, when it had one: publishers key (and partition) both
    events by ``unit_id`` when present, so an outcome must carry its prediction's unit to
    land on the same partition. The join still matches by (rollout, request id)."""


def partition_key(event: Prediction | Outcome) -> str:
    """Return the key an event is partitioned by: its ``unit_id``, else its ``request_id``.

    A unit's requests then share a partition, so one join partition sees a unit's first
    exposure and its later requests (DESIGN rule 10); a request without a unit is its own.
    """
    return event.unit_id or event.request_id


CellKey = tuple[str, int, str, Arm]
"""The identity of a cohort cell: (rollout_id, window_start_ms, segment, arm).

The cell layout is owned here: a cell keeps per metric the sums :data:`SUMS` (one
:class:`MetricSums`) and a histogram of :data:`SCORE_BINS` model-score bins. The join
accumulates it (:class:`streammon.join.cells.CellState`), a :class:`CohortSummary` carries
it, and the statistics take it as the arrays :data:`streammon.stats.cells.FIELDS`
(:data:`SUMS` per arm, suffixed by :data:`ARM_CODES`).
"""
SCORE_BINS = 10
"""Equal-width bins of a prediction's score in [0, 1] (the drift check's histogram)."""
ARM_CODES: dict[str, str] = {"baseline": "a", "canary": "b"}
"""The suffix of an arm in the statistics' arrays: ``n_a`` is the baseline's n."""


class MetricSums(msgspec.Struct, frozen=True, array_like=True):
    """Sufficient statistics of one metric in one cell, per unit: n, Σy, Σy², and ratio sums.

    ``n`` counts units with at least one observation of the metric, ``sum`` = Σ_u y_u and
    ``sumsq`` = Σ_u y_u², where y_u is the unit's total of the metric over its m_u
    observations in the cell. The last three carry the ratio metric Σy/Σm (per request)
    as *excesses over one observation per unit*: ``dm`` = Σ(m_u − 1), ``dm2`` =
    Σ(m_u² − 1), ``dym`` = Σ y_u(m_u − 1). A request without a unit (m_u = 1) adds nothing
    to them, so summaries of older builds (three fields) read as one request per unit.
    :func:`streammon.stats.ratio.linearize` turns them into the delta-method sums.
    """

    n: int = 0
    sum: float = 0.0
    sumsq: float = 0.0
    dm: float = 0.0
    dm2: float = 0.0
    dym: float = 0.0

    def __add__(self, other: MetricSums) -> MetricSums:
        return MetricSums(self.n + other.n, self.sum + other.sum, self.sumsq + other.sumsq,
                          self.dm + other.dm, self.dm2 + other.dm2, self.dym + other.dym)


SUMS: tuple[str, ...] = MetricSums.__struct_fields__[:3]
"""The sums the tests take per metric and arm, in order: ``("n", "sum", "sumsq")``."""
RATIO_SUMS: tuple[str, ...] = MetricSums.__struct_fields__[3:]
"""The ratio sums a cell keeps after them (``("dm", "dm2", "dym")``); the decider turns
them into delta-method pseudo-sums (:func:`streammon.stats.ratio.linearize`)."""


class CohortSummary(msgspec.Struct, frozen=True, kw_only=True):
    """Cumulative statistics of one (rollout, window, segment, arm) from one source.

    ``source`` names the join partition that produced it; summaries from different
    sources add up, and a re-sent summary under the same :func:`summary_key`
    replaces the old one (it is cumulative, never a delta).
    """

    v: int = SCHEMA_VERSION
    rollout_id: str
    window_start_ms: int
    window_ms: int
    segment: str
    arm: Arm
    source: str
    metrics: dict[str, MetricSums]
    score_hist: list[int]
    watermark_ms: int
    duplicates: int = 0
    expired: int = 0

    @property
    def cell(self) -> CellKey:
        """The cell this summary describes (the same from every source)."""
        return (self.rollout_id, self.window_start_ms, self.segment, self.arm)

    @property
    def key(self) -> str:
        """The deterministic key under which this summary overwrites its predecessors."""
        return summary_key(self.cell, self.source)


def summary_key(cell: CellKey, source: str) -> str:
    """Return the deterministic identity of a cohort cell from one source."""
    rollout_id, window_start_ms, segment, arm = cell
    return f"{rollout_id}|{window_start_ms}|{segment}|{arm}|{source}"


class MetricSpecWire(msgspec.Struct, frozen=True, kw_only=True):
    """One guarded metric of a rollout, as written in a rollout spec."""

    name: MetricName
    kind: Kind
    bad_direction: BadDirection
    margin: Annotated[float, msgspec.Meta(ge=0.0)] = 0.0
    label_delay_windows: Annotated[int, msgspec.Meta(ge=0)] = 0
    covariate: bool = False
    """``label``/``value`` only: reduce variance with the predictions' ``covariate``
    (CUPED, θ estimated from earlier windows); the metric is then judged as continuous."""
    quantile: float | None = None
    """``latency_ms`` only: judge the upper tail instead of the mean — the share of
    requests slower than the baseline's ``quantile`` (e.g. 0.95 for p95), a threshold
    fixed on the first window with enough baseline requests. ``margin`` is then a share
    of requests (e.g. 0.01: one point above ``1 - quantile``). See docs/statistics.md."""
    horizon_ms: Annotated[int, msgspec.Meta(ge=0)] | None = None
    """How long after a prediction its outcome counts. A window's cohort is judged once
    the horizon has passed and is then frozen (never revised); an outcome metric's label
    coverage is guarded per arm. None takes the default
    (:func:`streammon.decide.attribution.horizon_ms_of`): 0 for the prediction-time
    metrics (``latency_ms``, ``error``, ``timeout``), ``max(1, label_delay_windows)``
    windows for ``label`` and ``value``. At most ``ttl_ms``."""
    weight: Annotated[float, msgspec.Meta(gt=0.0)] = 1.0
    """The metric's share of the averaged harm e-value, relative to the other metrics'
    (all 1 by default: the plain average). Declared before the rollout, so any weights
    keep false rollbacks at most alpha/2; a primary metric with a larger weight is caught sooner,
    the others later. See docs/statistics.md, *alpha across a rollout*."""


class SpecDefaults:
    """The defaults of a :class:`RolloutSpec`, declared once (the decision policy's too)."""

    ALPHA = 0.05
    F0 = 0.05
    GROWTH = 2.0
    F_MAX = 0.5
    STEP_WINDOWS = 5
    MIN_SAMPLES_PER_STAGE = 100
    """Canary samples a stage needs before the ramp steps on."""
    OUTCOME_HORIZON_WINDOWS = 1
    """An outcome metric without ``horizon_ms`` is judged ``max(this, label_delay_windows)``
    windows after its own (then frozen): every prediction gets at least a whole window
    plus ``grace_ms`` for its outcome (see docs/statistics.md, *Attribution horizon*)."""


class RolloutSpec(msgspec.Struct, frozen=True, kw_only=True):
    """A rollout: what replaces what, which metrics guard it, and how traffic ramps.

    ``strategy`` picks the ramp (see :mod:`streammon.decide.strategies`): ``canary`` grows the
    candidate's share geometrically, f_t = min(f_max, f0 * growth**t); ``linear`` by
    ``increment`` per stage; ``stages`` follows the explicit list ``stages``;
    ``blue_green`` validates green (the candidate) on ``f0`` of the traffic, served
    (``validation="traffic"``) or mirrored and never served (``validation="shadow"``),
    then switches everything at once. ``drift_guard`` rolls back when the candidate's
    score distribution drifts from the baseline's (on by default for shadow validation).
    """

    rollout_id: NonEmpty
    baseline: NonEmpty
    candidate: NonEmpty
    metrics: list[MetricSpecWire]
    strategy: Literal["canary", "linear", "stages", "blue_green"] = "canary"
    alpha: Annotated[float, msgspec.Meta(gt=0.0, lt=0.5)] = SpecDefaults.ALPHA
    f0: Annotated[float, msgspec.Meta(gt=0.0, le=1.0)] = SpecDefaults.F0
    growth: Annotated[float, msgspec.Meta(ge=1.0)] = SpecDefaults.GROWTH
    increment: Annotated[float, msgspec.Meta(gt=0.0, le=1.0)] = 0.1
    stages: list[Annotated[float, msgspec.Meta(gt=0.0, le=1.0)]] = msgspec.field(
        default_factory=list)
    validation: Literal["traffic", "shadow"] = "traffic"
    drift_guard: bool | None = None
    f_max: Annotated[float, msgspec.Meta(gt=0.0, le=1.0)] = SpecDefaults.F_MAX
    step_windows: Annotated[int, msgspec.Meta(ge=1)] = SpecDefaults.STEP_WINDOWS
    min_final_windows: Annotated[int, msgspec.Meta(ge=1)] | None = None
    """Windows the final stage must last before promotion (default: ``step_windows``)."""
    min_samples_per_stage: Annotated[int, msgspec.Meta(ge=0)] = (
        SpecDefaults.MIN_SAMPLES_PER_STAGE)
    window_ms: Annotated[int, msgspec.Meta(ge=100)] = 60_000
    grace_ms: Annotated[int, msgspec.Meta(ge=0)] = 10_000
    ttl_ms: Annotated[int, msgspec.Meta(ge=1)] = 3_600_000


class Command(msgspec.Struct, frozen=True, kw_only=True):
    """A control command proposed by ``issued_by``, authenticated by ``sig`` (Ed25519).

    ``seq`` is the sequence number the proposer expects it to take (the applied seq it
    saw, plus one); the actuator assigns the real one. ``epoch`` names the rollout's
    incarnation (set by its ``start``) and ``expires_ms`` bounds replays. ``weights`` maps
    model version to traffic fraction and sums to 1. ``spec`` is set on ``start`` so every
    reader of the control topic learns the rollout's policy.
    """

    v: int = SCHEMA_VERSION
    rollout_id: NonEmpty
    seq: Annotated[int, msgspec.Meta(ge=1)]
    action: Action
    weights: dict[str, float]
    baseline: NonEmpty
    candidate: NonEmpty
    fraction: Probability
    stage: int = 0
    reason: str = ""
    issued_by: str = "decider"
    ts_ms: TimestampMs = 0
    spec: RolloutSpec | None = None
    epoch: str = ""
    expires_ms: TimestampMs = 0
    sig: str = ""


class Verdict(StrEnum):
    """Argo-style phases; :func:`streammon.decide.policy.worst` picks the most severe."""

    PROMOTE = "Promote"
    STEP = "Step"
    PENDING = "Pending"
    RUNNING = "Running"
    INCONCLUSIVE = "Inconclusive"
    HALT = "Halt"
    ERROR = "Error"
    ROLLBACK = "Rollback"


class MetricEstimate(msgspec.Struct, frozen=True, kw_only=True):
    """One metric's matched-cohort effect estimate and confidence bounds (Δ = canary - baseline).

    The one estimate type from the statistics to the wire: the decider
    (:mod:`streammon.decide.policy`) builds it after the metric's last judged window and
    a :class:`Diagnosis` carries it (through :meth:`json_safe`).
    """

    name: str
    effect: float
    rel_effect: float
    lower: float
    upper: float
    n_baseline: int
    n_canary: int
    verdict: Verdict
    p_harm: float = 1.0
    """The harm e-process's anytime p-value (1 when nothing is judged yet)."""
    windows_judged: int = 0
    """Windows whose outcomes have matured and were judged."""
    changed: bool = False
    """True when the effect changed during the rollout (the running bounds no longer
    overlap): ``effect``, ``lower`` and ``upper`` are then the current stage's."""

    def json_safe(self) -> MetricEstimate:
        """Return the estimate with its numbers as JSON can carry them (see :func:`json_number`)."""
        return msgspec.structs.replace(
            self, effect=json_number(self.effect), rel_effect=json_number(self.rel_effect),
            lower=json_number(self.lower), upper=json_number(self.upper),
            p_harm=json_number(self.p_harm, 1.0))


class Diagnosis(msgspec.Struct, frozen=True, kw_only=True):
    """What the decider concluded after one closed window of one rollout."""

    v: int = SCHEMA_VERSION
    rollout_id: str
    window_start_ms: int
    windows_closed: int
    stage: int
    fraction: float
    action: str
    verdict: str
    metrics: list[MetricEstimate]
    message: str = ""
    ts_ms: int = 0
    srm_p_value: float = 1.0
    drift_p_value: float = 1.0


class PredictionBatch(msgspec.Struct, frozen=True, kw_only=True):
    """Several predictions in one Kafka message, all of one partition (the batch envelope).

    The publisher SDK groups events by the murmur2 partition of their ``request_id``, so
    co-partitioning holds per event; the message key is the first event's request id.
    """

    v: int = SCHEMA_VERSION
    events: list[Prediction]


class OutcomeBatch(msgspec.Struct, frozen=True, kw_only=True):
    """Several outcomes in one Kafka message, all of one partition (the batch envelope)."""

    v: int = SCHEMA_VERSION
    events: list[Outcome]


class EffectPoint(msgspec.Struct, frozen=True, array_like=True):
    """One metric's estimate after one window: [window, effect, lower, upper]."""

    window: int
    effect: float
    lower: float
    upper: float


class MetricHistory(msgspec.Struct, frozen=True, kw_only=True):
    """A metric's effect and confidence bounds over time, overall and per segment."""

    name: str
    failed: bool
    overall: list[EffectPoint]
    by_segment: dict[str, EffectPoint]


class CommandNote(msgspec.Struct, frozen=True, array_like=True):
    """One command in a rollout's timeline: [seq, action, fraction, ts_ms, issued_by]."""

    seq: int
    action: str
    fraction: float
    ts_ms: int
    issued_by: str


class RollbackReport(msgspec.Struct, frozen=True, kw_only=True):
    """Why a rollout was rolled back: the post-mortem the decider writes on every rollback."""

    v: int = SCHEMA_VERSION
    rollout_id: str
    reason: str
    ts_ms: int
    restored_version: str
    candidate: str
    windows_closed: int
    metrics: list[MetricHistory]
    drift_p_value: float
    srm_p_value: float
    commands: list[CommandNote]


def json_number(x: float, nan: float = 0.0) -> float:
    """Return ``x`` as JSON can carry it: infinities clamped to ±1e300, NaN replaced."""
    if math.isnan(x):
        return nan
    return max(min(float(x), 1e300), -1e300)


_T = TypeVar("_T")
_DECODERS: dict[type[Any], msgspec.json.Decoder[Any]] = {}
_ENCODER = msgspec.json.Encoder()


def decode(kind: type[_T], data: bytes | str) -> _T:
    """Decode and validate one JSON event of type ``kind``; raise EventError on bad input."""
    decoder = _DECODERS.get(kind)
    if decoder is None:
        decoder = _DECODERS[kind] = msgspec.json.Decoder(kind)
    try:
        event: _T = decoder.decode(data)
    except msgspec.ValidationError as exc:
        raise EventError(f"{kind.__name__}: {exc}; see topics/ for the schema") from exc
    except msgspec.DecodeError as exc:
        raise EventError(f"{kind.__name__}: not valid JSON ({exc})") from exc
    check_semantics(event)
    return event


def check_semantics(event: object) -> None:
    """Check what a JSON Schema cannot express: version, an outcome field, finiteness."""
    version = getattr(event, "v", SCHEMA_VERSION)
    if version != SCHEMA_VERSION:
        raise EventError(f"unsupported schema version v={version} - at `$.v`; this build reads v=1")
    if isinstance(event, Prediction) and event.covariate is not None \
            and not math.isfinite(event.covariate):
        raise EventError("Prediction: `covariate` must be finite - at `$.covariate`")
    if isinstance(event, Outcome):
        if event.label is None and event.value is None:
            raise EventError("Outcome: needs `label` (0/1) or `value` - at `$.label`")
        if event.value is not None and not math.isfinite(event.value):
            raise EventError("Outcome: `value` must be finite - at `$.value`")


def encode(event: msgspec.Struct) -> bytes:
    """Encode an event as compact JSON."""
    return _ENCODER.encode(event)
