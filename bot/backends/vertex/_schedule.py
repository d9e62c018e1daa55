"""When each running operation is next worth a poll: Vertex has no batch status call, so every poll is a request.

Kept in memory on purpose: after a restart every ref is unknown, hence due at once, which is what a restart wants.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass


@dataclass
class _Entry:
    due: float
    polls: int = 0


class PollSchedule:
    """First poll ``first_after`` s after submit, then ``interval`` growing by ``growth`` up to ``max_interval``."""

    def __init__(
        self,
        clock: Callable[[], float],
        *,
        first_after: float,
        interval: float,
        max_interval: float,
        growth: float,
    ) -> None:
        if min(first_after, interval, max_interval) < 0 or growth < 1:
            raise ValueError("poll delays must be >= 0 and growth >= 1")
        self._clock = clock
        self._first_after = first_after
        self._interval = interval
        self._max_interval = max(max_interval, interval)
        self._growth = growth
        self._entries: dict[str, _Entry] = {}

    def submitted(self, ref: str) -> None:
        """Veo cannot be done sooner than ``first_after``: polling earlier only spends requests."""
        self._entries[ref] = _Entry(due=self._clock() + self._first_after)

    def due(self, refs: Iterable[str]) -> list[str]:
        """The refs worth polling now, in the given order, without duplicates; unknown refs are due."""
        now = self._clock()
        seen: set[str] = set()
        result: list[str] = []
        for ref in refs:
            if ref in seen:
                continue
            seen.add(ref)
            entry = self._entries.get(ref)
            if entry is None or entry.due <= now:
                result.append(ref)
        return result

    def polled(self, ref: str) -> None:
        """Still running (or the poll failed): next time after the current, growing interval."""
        entry = self._entries.setdefault(ref, _Entry(due=0.0))
        delay = min(self._interval * self._growth**entry.polls, self._max_interval)
        entry.polls += 1
        entry.due = self._clock() + delay

    def forget(self, ref: str) -> None:
        self._entries.pop(ref, None)

    def next_due(self, ref: str) -> float | None:
        entry = self._entries.get(ref)
        return entry.due if entry is not None else None
