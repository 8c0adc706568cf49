"""Prometheus metrics of the worker and the actuator, read from their state at scrape time.

Nothing on the hot path changes: the collectors read counters the processes keep anyway
(:attr:`JoinAgent.counters`, each partition's ``JoinAgent.joins[p].state.counters``, the decider's
rollout table, the actuator's Redis hash ``streammon:actuator:stats``) whenever Prometheus
scrapes. Rates ("events per second") are ``rate(streammon_join_..._total[1m])`` in PromQL.

Worker (:class:`WorkerCollector`, over the :class:`~streammon.app.AppParts` that
:func:`streammon.app.create_app` returns):

- ``streammon_join_events_consumed_total`` (predictions + outcomes),
  ``streammon_join_dead_lettered_total``, ``streammon_join_agent_total{kind}``
- ``streammon_join_events_total{partition,kind}`` predictions, outcomes, joined,
  duplicate_predictions, duplicate_outcomes, expired_predictions, orphan_outcomes
- ``streammon_join_pending{partition}`` pending join entries (waiting halves and the
  joined ids kept for deduplication until their TTL)
- ``streammon_consumer_lag{topic,partition}`` end offset minus committed offset (Faust monitor)
- ``streammon_rollout_phase{rollout_id,phase}``, ``streammon_rollout_canary_fraction``,
  ``streammon_rollout_stage``, ``streammon_rollout_windows_closed`` (decider state)
- ``streammon_decider_events_total{kind}`` if the decider keeps ``counters``

Actuator (:class:`ActuatorCollector`, over Redis): ``streammon_actuator_commands_total{result}``
(applied, duplicate, rejected_*), ``streammon_route_canary_fraction{rollout_id}``,
``streammon_route_phase{rollout_id,phase}`` and ``streammon_route_commands_total{rollout_id,
action}`` (from the rollout's route log).
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Iterator, Mapping
from typing import TYPE_CHECKING, Any

import msgspec
from prometheus_client import CollectorRegistry, start_http_server
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector
from redis.exceptions import ResponseError

from streammon.control.commands import PHASES, ROUTE_KEY_PREFIX, RouteState, log_key

if TYPE_CHECKING:
    from streammon.app import AppParts

log = logging.getLogger(__name__)
STATS_KEY = "streammon:actuator:stats"
JOIN_KINDS = ("predictions", "outcomes", "joined", "duplicate_predictions",
              "duplicate_outcomes", "expired_predictions", "orphan_outcomes")
_ROUTES = msgspec.json.Decoder(RouteState)
_PHASE_NAMES = sorted(set(PHASES.values()))


def start_metrics_server(port: int, registry: CollectorRegistry, *,
                         addr: str = "127.0.0.1") -> Any:
    """Serve ``registry`` at ``http://addr:port/metrics`` from a daemon thread.

    Binds loopback by default; pass ``addr="0.0.0.0"`` inside a container. Returns the
    server; call ``shutdown()`` on it to stop.
    """
    server, _thread = start_http_server(port, addr=addr, registry=registry)
    return server


def worker_registry(parts: AppParts) -> CollectorRegistry:
    """Return a registry with the worker's collector over the parts of a built app."""
    registry = CollectorRegistry()
    registry.register(WorkerCollector(parts))
    return registry


def actuator_registry(client: Any) -> CollectorRegistry:
    """Return a registry with the actuator's collector over a redis-py client."""
    registry = CollectorRegistry()
    registry.register(ActuatorCollector(client))
    return registry


class WorkerCollector(Collector):
    """Collects join, lag and decider metrics from a running worker's :class:`AppParts`."""

    def __init__(self, parts: AppParts) -> None:
        self.parts = parts

    def collect(self) -> Iterator[Metric]:
        """Yield every worker metric; a part that cannot be read this time is skipped."""
        join, decide = self.parts.join, self.parts.decide
        yield from join_metrics(join.counters, partition_states(join))
        yield from lag_metrics(self.parts.app.monitor)
        if decide is not None:
            yield from decider_metrics(_table_items(decide.rollouts_table),
                                       getattr(decide, "counters", {}))


def partition_states(join: Any) -> dict[int, Any]:
    """Return ``{partition: JoinState}`` of a JoinAgent (``joins[p].state``)."""
    joins = dict(getattr(join, "joins", {}))
    return {p: pj.state for p, pj in joins.items()}


def join_metrics(agent_counters: Mapping[str, int], states: Mapping[int, Any]) -> list[Metric]:
    """Return the join's metrics from the agent's counters and each partition's JoinState."""
    consumed = CounterMetricFamily("streammon_join_events_consumed",
                                   "Prediction and outcome events consumed by the join "
                                   "(partitions this worker owns now)")
    consumed.add_metric([], sum(s.counters.get("predictions", 0) + s.counters.get("outcomes", 0)
                                for s in states.values()))
    dead = CounterMetricFamily("streammon_join_dead_lettered",
                               "Rejected events sent to the dead-letter topic")
    dead.add_metric([], agent_counters.get("dead_lettered", 0))
    agent = CounterMetricFamily("streammon_join_agent", "Join agent counters by kind "
                                "(messages, records_written, replayed_messages_skipped ...)",
                                labels=["kind"])
    for kind, count in sorted(agent_counters.items()):
        agent.add_metric([kind], count)
    kinds = CounterMetricFamily("streammon_join_events",
                                "Join events per partition of this worker, by kind",
                                labels=["partition", "kind"])
    pending = GaugeMetricFamily("streammon_join_pending",
                                "Pending join entries: halves waiting for their other half and "
                                "joined request ids kept to drop duplicates until their TTL",
                                labels=["partition"])
    for partition, state in sorted(states.items()):
        for kind in JOIN_KINDS:
            kinds.add_metric([str(partition), kind], state.counters.get(kind, 0))
        pending.add_metric([str(partition)], _pending_size(state))
    return [consumed, dead, agent, kinds, pending]


def _pending_size(state: Any) -> int:
    """Count pending entries (a dict owned by the agent's thread; len() is atomic)."""
    try:
        return len(state.pending)
    except RuntimeError:  # the table changed while we counted: skip this partition's value
        return 0


def lag_metrics(monitor: Any) -> list[Metric]:
    """Return per-partition consumer lag (end offset - committed offset) from Faust's monitor."""
    lag = GaugeMetricFamily("streammon_consumer_lag",
                            "Messages behind the end of the partition (not yet committed)",
                            labels=["topic", "partition"])
    ends = dict(getattr(monitor, "tp_end_offsets", None) or {})
    committed = dict(getattr(monitor, "tp_committed_offsets", None) or {})
    read = dict(getattr(monitor, "tp_read_offsets", None) or {})
    for tp, end in sorted(ends.items(), key=lambda item: (item[0].topic, item[0].partition)):
        done = committed.get(tp, read.get(tp, -1) + 1)
        lag.add_metric([tp.topic, str(tp.partition)], max(0, end - done))
    return [lag]


def decider_metrics(rollouts: Iterable[tuple[Any, Any]],
                    counters: Mapping[str, int]) -> list[Metric]:
    """Return one set of gauges per rollout from the decider's table of RolloutState JSON."""
    from streammon.decide.progress import RolloutState

    decode = msgspec.json.Decoder(RolloutState).decode
    phase = GaugeMetricFamily("streammon_rollout_phase", "1 for the rollout's current phase",
                              labels=["rollout_id", "phase"])
    gauges = {name: GaugeMetricFamily(f"streammon_rollout_{name}", text, labels=["rollout_id"])
              for name, text in (("canary_fraction", "Canary traffic fraction"),
                                 ("stage", "Ramp stage"),
                                 ("windows_closed", "Decision windows assessed"))}
    for _key, raw in rollouts:
        state = decode(raw)
        rid = state.spec.rollout_id
        for name in _PHASE_NAMES:
            phase.add_metric([rid, name], 1.0 if state.phase == name else 0.0)
        gauges["canary_fraction"].add_metric([rid], state.fraction)
        gauges["stage"].add_metric([rid], state.stage)
        gauges["windows_closed"].add_metric([rid], state.windows_closed)
    events = CounterMetricFamily("streammon_decider_events", "Decider diagnoses and commands",
                                 labels=["kind"])
    for kind, count in sorted(counters.items()):
        events.add_metric([kind], count)
    return [phase, *gauges.values(), events]


def _table_items(table: Any) -> list[tuple[Any, Any]]:
    """Read the raw store of a Faust table (or a plain mapping) without side effects."""
    try:
        return list(getattr(table, "data", table).items())
    except RuntimeError:  # changed during iteration: skip this scrape
        return []


class ActuatorCollector(Collector):
    """Collects the actuator's counters and the applied route states from Redis."""

    def __init__(self, client: Any) -> None:
        self.client = client

    def collect(self) -> Iterator[Metric]:
        """Yield the actuator metrics; if Redis does not answer, yield none this time."""
        import redis

        try:
            stats = self.client.hgetall(STATS_KEY)
            routes = _read_routes(self.client)
        except redis.RedisError as exc:
            log.warning("metrics: cannot read Redis: %s", exc)
            return
        yield from actuator_metrics(stats, routes)


def _read_routes(client: Any) -> list[tuple[RouteState, list[RouteState]]]:
    out = []
    for key in client.scan_iter(match=f"{ROUTE_KEY_PREFIX}*", count=500):
        name = key.decode() if isinstance(key, bytes) else key
        try:
            raw = client.get(name)
            route = _ROUTES.decode(raw) if raw else None
        except (ResponseError, msgspec.DecodeError):
            continue  # a poison value: the actuator quarantines it and counts it
        if route is not None:
            entries = client.lrange(log_key(route.rollout_id), 0, -1)
            out.append((route, [_ROUTES.decode(e) for e in entries]))
    return out


def actuator_metrics(stats: Mapping[Any, Any],
                     routes: list[tuple[RouteState, list[RouteState]]]) -> list[Metric]:
    """Return the actuator's metrics from its stats hash and the route states with logs."""
    commands = CounterMetricFamily("streammon_actuator_commands",
                                   "Control commands handled by the actuator, by result",
                                   labels=["result"])
    for name, value in sorted(stats.items()):
        label = name.decode() if isinstance(name, bytes) else str(name)
        commands.add_metric([label], float(value))
    fraction = GaugeMetricFamily("streammon_route_canary_fraction",
                                 "Applied canary weight", labels=["rollout_id"])
    phase = GaugeMetricFamily("streammon_route_phase", "1 for the applied phase",
                              labels=["rollout_id", "phase"])
    applied = CounterMetricFamily("streammon_route_commands", "Applied commands by action",
                                  labels=["rollout_id", "action"])
    for route, entries in routes:
        fraction.add_metric([route.rollout_id], route.candidate_weight)
        for name in _PHASE_NAMES:
            phase.add_metric([route.rollout_id, name], 1.0 if route.phase == name else 0.0)
        for action in sorted({e.action for e in entries}):
            applied.add_metric([route.rollout_id, action],
                               sum(1 for e in entries if e.action == action))
    return [commands, fraction, phase, applied]
