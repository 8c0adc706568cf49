"""The Faust application: the join and the decider as thin agents over pure state.

``create_app`` builds the app from :class:`~streammon.config.settings.Settings` and returns
it with its agents as :class:`AppParts` (what the Prometheus collector reads); ``run_worker``
runs it in this process until SIGTERM/SIGINT (``streammon worker``). Scale out by
starting more workers with the same settings: Kafka spreads the partitions of
predictions and outcomes over them.
"""

from __future__ import annotations

import atexit
import gc
import logging
import shutil
import tempfile
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from streammon.config.settings import Settings
from streammon.envelope import MAX_LEAD_MS
from streammon.errors import ConfigError
from streammon.join.state import JoinConfig

if TYPE_CHECKING:
    from streammon.app.decide_agent import DecideAgent
    from streammon.app.join_agent import JoinAgent
    from streammon.app.join_service import JoinService

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class AppParts:
    """A built worker: the Faust app, its join and (unless ``decide=False``) its decider."""

    app: Any
    """The ``faust.App`` (its ``monitor`` holds the consumer offsets)."""
    join: JoinService | JoinAgent
    decide: DecideAgent | None = None


def create_app(
    settings: Settings, *, join_config: JoinConfig, partitions: int, decide: bool = True,
    max_lead_ms: int = MAX_LEAD_MS, join_engine: str = "batch",
) -> AppParts:
    """Return a Faust app with the join (and, unless ``decide=False``, the decider).

    ``join_engine="batch"`` (the default) runs the join as a librdkafka batch loop hosted
    by the app (:mod:`streammon.app.join_service`); ``"faust"`` as a Faust agent over
    per-message streams (:mod:`streammon.app.join_agent`; slower, kept for comparison).
    """
    import faust

    from streammon.app.credentials import faust_credentials
    from streammon.app.decide_agent import DecideAgent
    from streammon.app.join_agent import JoinAgent
    from streammon.app.join_service import JoinHost, JoinService

    opts: dict[str, Any] = {
        "broker": settings.kafka.faust_broker_url(),
        "store": "memory://",
        "datadir": _scratch_dir(),
        "topic_partitions": partitions,
        "topic_replication_factor": 1,
        "consumer_auto_offset_reset": "earliest",
        "web_enabled": settings.web_port is not None,
        "web_bind": "127.0.0.1",
        "web_port": settings.web_port or 6066,
        "autodiscover": False,
        "producer_linger": 0.005,
        "stream_wait_empty": False,
    }
    credentials = faust_credentials(settings.kafka.options)
    if credentials is not None:
        opts["broker_credentials"] = credentials
    if settings.kafka.fast_group_join:
        opts.update(broker_rebalance_timeout=3, broker_session_timeout=6,
                    broker_heartbeat_interval=1)
    app = faust.App(settings.app_id, **opts)
    join: JoinService | JoinAgent
    if join_engine == "batch":
        join = JoinService(settings=settings, config=join_config, partitions=partitions,
                           app_id=settings.app_id, max_lead_ms=max_lead_ms)
        JoinHost.attach(app, join)
    elif join_engine == "faust":
        join = JoinAgent(app, settings=settings, config=join_config, partitions=partitions,
                         max_lead_ms=max_lead_ms)
    else:
        raise ConfigError(f"join engine {join_engine!r} (flag --join-engine) must be "
                          "'batch' or 'faust'")
    decider = DecideAgent(app, settings=settings, partitions=partitions) if decide else None
    return AppParts(app=app, join=join, decide=decider)


def _scratch_dir() -> str:
    """Return a private directory for Faust's data dir, removed when the process exits.

    Every table is in memory (the join's state lives in its changelog records), so Faust
    only needs somewhere to write; its default, ``{app_id}-data`` in the working directory,
    would leave one directory per app id behind in whatever directory a worker started in.
    """
    path = tempfile.mkdtemp(prefix="streammon-faust-")
    atexit.register(shutil.rmtree, path, ignore_errors=True)
    return path


def run_worker(settings: Settings, *, join_config: JoinConfig, loglevel: str = "warning",
               metrics_port: int | None = None, metrics_addr: str = "127.0.0.1",
               max_lead_ms: int = MAX_LEAD_MS, join_engine: str = "batch",
               decide: bool = True) -> None:
    """Check the topic layout, then run the app in this process until stopped.

    With ``metrics_port`` the worker serves Prometheus metrics on 127.0.0.1:PORT/metrics.
    """
    import faust

    from streammon.kafka.topics import check_copartitioned

    partitions = check_copartitioned(settings.kafka, settings.topics)
    parts = create_app(settings, join_config=join_config, partitions=partitions,
                       max_lead_ms=max_lead_ms, join_engine=join_engine, decide=decide)
    if metrics_port is not None:
        from streammon.ops.prometheus import start_metrics_server, worker_registry

        start_metrics_server(metrics_port, worker_registry(parts), addr=metrics_addr)
    worker = faust.Worker(parts.app, loglevel=loglevel, quiet=True)
    tune_gc()
    worker.execute_from_commandline()


GC_THRESHOLDS = (50_000, 20, 20)
"""Generation thresholds of the worker's garbage collector (CPython's are 700, 10, 10)."""


def tune_gc() -> None:
    """Make the garbage collector cheap for a long-running worker (call once, at start).

    The join allocates a few objects per event, and with CPython's default thresholds a
    young collection runs every 700 allocations and a full one, which walks every live
    object (Faust's, the join's), every 70,000. ``gc.freeze()`` moves what start-up built
    into a generation that is never collected, and higher thresholds collect less often;
    the join's own state (pending entries, open units) is not tracked by the collector.
    """
    gc.collect()
    gc.freeze()
    gc.set_threshold(*GC_THRESHOLDS)
