"""Inputs a node received and did not use, counted by source and reason: every dropped message is accounted for
(status, /diagnostics), and each reason is logged once per episode (or instruction) with the count so far."""
from __future__ import annotations

import threading


class InputDrops:
    """Counts over the node's life; `new_episode` starts a new round of once-per-reason log lines."""

    def __init__(self):
        self._counts: dict[str, int] = {}     # "source: reason" -> messages
        self._this_episode: set[str] = set()
        self._lock = threading.Lock()         # counted on one thread, reported from others

    @property
    def counts(self) -> dict[str, int]:
        with self._lock:
            return dict(self._counts)

    def new_episode(self) -> None:
        with self._lock:
            self._this_episode = set()

    def count(self, source: str, reason: str) -> bool:
        """Counts one message; True when the reason is new in this episode."""
        key = f"{source}: {reason}"
        with self._lock:
            self._counts[key] = self._counts.get(key, 0) + 1
            first = key not in self._this_episode
            self._this_episode.add(key)
        return first

    def record(self, source: str, reason: str, detail: str = "") -> str | None:
        """Counts one message; the line to log when the reason is new in this episode, else None."""
        if not self.count(source, reason):
            return None
        return f"dropped {source} {reason}{': ' + detail if detail else ''} " \
               f"({self.counts[f'{source}: {reason}']} so far)"

    def diagnostic_values(self) -> list[tuple[str, str]]:
        """("dropped <source>: <reason>", count) pairs for a DiagnosticStatus."""
        return [(f"dropped {key}", str(count)) for key, count in sorted(self.counts.items())]
