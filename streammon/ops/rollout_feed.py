"""One rollout's history, folded from the cohorts, control and diagnostics topics.

:class:`RolloutEvents` is the deduplicated view (latest summary per cell key, commands
by seq, diagnoses by window); :class:`RolloutFeed` fills it from the topics and keeps
following them. The status view and the report read rollouts this way.
"""

from __future__ import annotations

import contextlib
import time
from dataclasses import dataclass, field
from typing import Any

from streammon import events
from streammon.config.settings import Settings
from streammon.errors import EventError
from streammon.events import CohortSummary, Command, Diagnosis
from streammon.kafka.topic_reader import TopicReader


@dataclass
class RolloutEvents:
    """Everything the topics say about one rollout, deduplicated.

    Cohort summaries are cumulative, so only the latest per :attr:`CohortSummary.key`
    counts; a command is identified by its ``seq`` and a diagnosis by its window.
    """

    rollout_id: str
    summaries: dict[str, CohortSummary] = field(default_factory=dict)
    commands_by_seq: dict[int, Command] = field(default_factory=dict)
    diagnoses_by_window: dict[int, Diagnosis] = field(default_factory=dict)

    @classmethod
    def from_lists(cls, rollout_id: str, summaries: list[CohortSummary],
                   commands: list[Command], diagnoses: list[Diagnosis]) -> RolloutEvents:
        """Build from decoded events in topic order; other rollouts' events are ignored."""
        data = cls(rollout_id)
        items: list[CohortSummary | Command | Diagnosis] = [*summaries, *commands, *diagnoses]
        for item in items:
            data.add(item)
        return data

    def add(self, item: CohortSummary | Command | Diagnosis) -> None:
        """Fold one decoded event into the view (later events replace earlier ones)."""
        if item.rollout_id != self.rollout_id:
            return
        if isinstance(item, CohortSummary):
            self.summaries[item.key] = item
        elif isinstance(item, Command):
            self.commands_by_seq[item.seq] = item
        else:
            self.diagnoses_by_window[item.windows_closed] = item

    @property
    def commands(self) -> list[Command]:
        """Commands in sequence order."""
        return [self.commands_by_seq[s] for s in sorted(self.commands_by_seq)]

    @property
    def diagnoses(self) -> list[Diagnosis]:
        """Diagnoses in window order."""
        return [self.diagnoses_by_window[w] for w in sorted(self.diagnoses_by_window)]


class RolloutFeed:
    """Follow the cohorts, control and diagnostics topics and fold one rollout."""

    def __init__(self, settings: Settings, rollout_id: str) -> None:
        self.data = RolloutEvents(rollout_id)
        names = settings.topics
        self._kinds: dict[str, type[Any]] = {names.cohorts: CohortSummary,
                                             names.control: Command,
                                             names.diagnostics: Diagnosis}
        self._reader = TopicReader(settings, self._kinds)

    def poll(self, timeout_s: float = 0.2, max_messages: int = 1000) -> int:
        """Fold the messages that arrive within ``timeout_s``; return how many were read."""
        records = self._reader.poll(timeout_s, max_messages)
        for topic, _key, value in records:
            with contextlib.suppress(EventError):  # the producer of a bad record reports it
                self.data.add(events.decode(self._kinds[topic], value))
        return len(records)

    def caught_up(self) -> bool:
        """Return True when every topic has been read to its current end."""
        return self._reader.caught_up()

    def read_to_end(self, timeout_s: float = 30.0) -> RolloutEvents:
        """Poll until every partition is read to its end (or ``timeout_s``); return the data."""
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self.poll(0.2) == 0 and self.caught_up():
                break
        return self.data

    def close(self) -> None:
        """Close the consumer."""
        self._reader.close()


def read_rollout(settings: Settings, rollout_id: str, *, timeout_s: float = 30.0) -> RolloutEvents:
    """Read one rollout's history from its three topics, to their current end."""
    feed = RolloutFeed(settings, rollout_id)
    try:
        return feed.read_to_end(timeout_s)
    finally:
        feed.close()
