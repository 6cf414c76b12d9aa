"""The capacity calendar: how much of a platform's pool is held at each instant.

A *hold* is a session's booking: ``[start, end)`` for some cores, memory and storage, and
perhaps one of its account's interactive sessions.
Sessions of one offer set are alternatives (at most one can be accepted), so a group of
siblings holds, at each instant, the largest of their amounts rather than the sum; holds of
different groups add up. :class:`Usage` is the resulting step function, built in
``O(k log k)`` from the ``k`` holds that overlap the window being planned — never from every
booking the broker has.
"""

from __future__ import annotations

import bisect
from collections import defaultdict
from collections.abc import Iterable, Iterator
from datetime import datetime

from execbroker.model.capacity import Amounts, Hold

__all__ = ["Usage"]


class Usage:
    """What is held at each instant: a step function over sorted breakpoints.

    ``levels[i]`` is held over ``[times[i], times[i + 1])``; before ``times[0]`` and after
    the last breakpoint nothing is held.
    """

    def __init__(self, holds: Iterable[Hold]) -> None:
        deltas: dict[datetime, Amounts] = defaultdict(Amounts)
        groups: dict[str, list[Hold]] = defaultdict(list)
        # Kept only to say who holds what (:meth:`holders`), when a plan has to wait.
        self.holds: list[Hold] = [hold for hold in holds if hold.end > hold.start]
        for hold in self.holds:
            groups[hold.group].append(hold)
        for members in groups.values():
            for moment, delta in _group_deltas(members):
                deltas[moment] = deltas[moment] + delta
        self.times: list[datetime] = sorted(deltas)
        # One list per resource, so that a peak is max() over a slice: C speed, not Python.
        self._cores: list[int] = []
        self._memory: list[int] = []
        self._storage: list[int] = []
        self._interactive: list[int] = []
        level = Amounts()
        for moment in self.times:
            level = level + deltas[moment]
            self._cores.append(level.cores)
            self._memory.append(level.memory_gib)
            self._storage.append(level.storage_gib)
            self._interactive.append(level.interactive)

    def __len__(self) -> int:
        return len(self.times)

    def level(self, index: int) -> Amounts:
        return Amounts(
            self._cores[index],
            self._memory[index],
            self._storage[index],
            self._interactive[index],
        )

    def peak(self, start: datetime, end: datetime) -> Amounts:
        """The most held at any instant of ``[start, end)``."""
        first = max(bisect.bisect_right(self.times, start) - 1, 0)
        last = bisect.bisect_left(self.times, end)
        if last <= first:
            return self.level(first) if self.times and self.times[first] <= start else Amounts()
        return Amounts(
            max(self._cores[first:last]),
            max(self._memory[first:last]),
            max(self._storage[first:last]),
            max(self._interactive[first:last]),
        )

    def add(self, start: datetime, end: datetime, amounts: Amounts) -> None:
        """Hold ``amounts`` over ``[start, end)`` as well, as a group of its own (negative
        amounts take a hold away): a booking moved in a calendar already built, without
        building it again. ``O(n)`` in the breakpoints.
        """
        if end <= start:
            return
        first = self._split(start)
        last = self._split(end)
        for index in range(first, last):
            self._cores[index] += amounts.cores
            self._memory[index] += amounts.memory_gib
            self._storage[index] += amounts.storage_gib
            self._interactive[index] += amounts.interactive

    def _split(self, moment: datetime) -> int:
        """The index of the breakpoint at ``moment``, made if there was none (what is
        held does not change there yet).
        """
        index = bisect.bisect_left(self.times, moment)
        if index < len(self.times) and self.times[index] == moment:
            return index
        level = self.level(index - 1) if index > 0 else Amounts()
        self.times.insert(index, moment)
        self._cores.insert(index, level.cores)
        self._memory.insert(index, level.memory_gib)
        self._storage.insert(index, level.storage_gib)
        self._interactive.insert(index, level.interactive)
        return index

    def breakpoints(self, start: datetime, end: datetime) -> Iterator[datetime]:
        """The instants in ``(start, end)`` where what is held changes."""
        index = bisect.bisect_right(self.times, start)
        while index < len(self.times) and self.times[index] < end:
            yield self.times[index]
            index += 1

    def first_exceeding(
        self, start: datetime, end: datetime, *, extra: Amounts, limit: Amounts
    ) -> datetime | None:
        """The first instant in ``[start, end)`` where what is held plus ``extra`` is over
        ``limit``; None when there is none.
        """
        index = max(bisect.bisect_right(self.times, start) - 1, 0)
        while index < len(self.times) and self.times[index] < end:
            if not (self.level(index) + extra).fits_within(limit):
                return max(self.times[index], start)
            index += 1
        return None

    def busiest(self, start: datetime, end: datetime, resource: str) -> datetime:
        """The first instant of ``[start, end)`` at which the most of ``resource`` (an
        :class:`Amounts` field name) is held.
        """
        levels = {
            "cores": self._cores,
            "memory_gib": self._memory,
            "storage_gib": self._storage,
            "interactive": self._interactive,
        }[resource]
        first = max(bisect.bisect_right(self.times, start) - 1, 0)
        last = bisect.bisect_left(self.times, end)
        if last <= first or not self.times:
            return start
        top = max(range(first, last), key=levels.__getitem__)
        return max(self.times[top], start)

    def holders(self, moment: datetime, resource: str) -> list[Hold]:
        """The holds with some of ``resource`` at ``moment``, one per group (siblings are
        alternatives: one booking). ``O(k)``: for telling the user, not for planning.
        """
        found: dict[str, Hold] = {}
        for hold in self.holds:
            if hold.start <= moment < hold.end and getattr(hold.amounts, resource) > 0:
                found.setdefault(hold.group, hold)
        return list(found.values())


def _group_deltas(members: list[Hold]) -> list[tuple[datetime, Amounts]]:
    """The step function of one group (pointwise max of its members) as changes in time."""
    if len(members) == 1:
        only = members[0]
        return [(only.start, only.amounts), (only.end, Amounts() - only.amounts)]
    moments = sorted({h.start for h in members} | {h.end for h in members})
    changes: list[tuple[datetime, Amounts]] = []
    previous = Amounts()
    for moment in moments:
        level = Amounts()
        for hold in members:
            if hold.start <= moment < hold.end:
                level = level.peak(hold.amounts)
        if level != previous:
            changes.append((moment, level - previous))
            previous = level
    return changes
