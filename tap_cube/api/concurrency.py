"""How many requests may be in flight at once: an adaptive limit, shared by a whole run.

A run's time is page fetches, and only the server knows how many it can serve at once.
The limit finds out as TCP's congestion window does, within `[1, ceiling]`
(`max_concurrent_requests`):

- It starts where the fixed default used to be (START) and, until the server first
  pushes back, grows by one per answer: it doubles every round trip (slow start).
- After that it grows by one per round: once as many answers as the limit came back
  near the latency floor. It grows only on answers to requests that found every slot
  taken, so a limit that is not what holds requests back does not grow.
- It is cut by half on a 429, a 503 or 504, a timeout or a reset, and by a quarter
  when an answer takes well over its floor (the server is queueing). A cut counts
  once per round: answers to requests sent before it say nothing of the new limit.

The latency floor is the shortest answer of the last FLOOR_MEMORY to 2 x FLOOR_MEMORY
seconds, so a server that became slower for good gets a new floor. With
`adaptive_concurrency` off the limit stays at the ceiling; the floor is still kept, for
the partitions' closing lines. Not thread-safe: the request gate (fetch.py) calls it
under its lock.
"""

from __future__ import annotations

import time
import typing as t
from dataclasses import dataclass

from tap_cube.settings import setting

if t.TYPE_CHECKING:
    from collections.abc import Callable, Mapping

#: Where the limit starts: the number of requests tap-cube used to send at once.
START = 4
#: An answer within this factor of the floor lets the limit grow.
NEAR_FLOOR = 1.3
#: An answer beyond this factor of the floor: the server is queueing requests.
QUEUEING = 1.7
#: The limit after the server refused, failed or timed out, as a share of the limit.
OVERLOAD_CUT = 0.5
#: The limit after an answer took well over its floor, as a share of the limit.
QUEUEING_CUT = 0.75
#: Seconds a shortest answer stays the floor, at least (at most twice this).
FLOOR_MEMORY = 30.0


@dataclass(frozen=True, slots=True)
class Sent:
    """A request in flight, as the limit knows it."""

    #: When it was sent, by the limit's clock.
    at: float
    #: The round of the limit it was sent in (a cut or, after slow start, a growth
    #: begins a new one).
    round: int
    #: Whether it took the last free slot: the limit was what held requests back.
    crowded: bool


class ConcurrencyLimit:
    """The number of requests the run may have in flight, adapted to the server's answers."""

    def __init__(
        self, ceiling: int, *, adaptive: bool = True, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.ceiling = max(1, ceiling)
        self.adaptive = adaptive
        self._clock = clock
        self._limit = float(min(START, self.ceiling) if adaptive else self.ceiling)
        self._slow_start = True
        self._round = 0
        #: Answers of this round near the floor, to requests sent crowded.
        self._near = 0
        #: The shortest answers of the current and the previous FLOOR_MEMORY period.
        self._shortest: float | None = None
        self._shortest_before: float | None = None
        self._period_began = clock()

    @classmethod
    def of(cls, config: Mapping[str, t.Any]) -> ConcurrencyLimit:
        """The limit the settings ask for: `max_concurrent_requests` and `adaptive_concurrency`."""
        return cls(
            int(setting(config, "max_concurrent_requests")),
            adaptive=bool(setting(config, "adaptive_concurrency")),
        )

    @property
    def current(self) -> int:
        """How many requests may be in flight now."""
        return int(self._limit)

    @property
    def floor(self) -> float | None:
        """The latency floor in seconds: the shortest recent answer (None: none yet)."""
        kept = [s for s in (self._shortest, self._shortest_before) if s is not None]
        return min(kept) if kept else None

    def sent(self, in_flight: int) -> Sent:
        """A request goes out; `in_flight` counts it."""
        return Sent(self._clock(), self._round, crowded=in_flight >= self.current)

    def answered(self, sent: Sent) -> None:
        """The server answered a request in its own time (a page, or an answer that is no
        sign of overload, such as a 404)."""
        latency = self._clock() - sent.at
        self._note_latency(latency)
        floor = self.floor
        if not self.adaptive or floor is None:
            return
        if latency > QUEUEING * floor:
            self._cut(sent, QUEUEING_CUT)
        elif latency <= NEAR_FLOOR * floor and sent.crowded:
            self._grow(sent)

    def overloaded(self, sent: Sent) -> None:
        """The server refused (429), failed under load (503, 504), or timed out or reset."""
        if self.adaptive:
            self._cut(sent, OVERLOAD_CUT)

    def forget_floor(self) -> None:
        """Measure the floor afresh: another stream's pages may take longer or shorter."""
        self._shortest = self._shortest_before = None
        self._period_began = self._clock()

    def _note_latency(self, latency: float) -> None:
        now = self._clock()
        elapsed = now - self._period_began
        if elapsed >= FLOOR_MEMORY:
            # The period that ended is remembered for one more, unless that passed too.
            self._shortest_before = self._shortest if elapsed < 2 * FLOOR_MEMORY else None
            self._shortest = None
            self._period_began = now
        if self._shortest is None or latency < self._shortest:
            self._shortest = latency

    def _cut(self, sent: Sent, share: float) -> None:
        if sent.round != self._round:
            return  # sent before the last change: it says nothing of this limit
        self._limit = max(1.0, self._limit * share)
        self._slow_start = False
        self._next_round()

    def _grow(self, sent: Sent) -> None:
        if self._limit >= self.ceiling:
            return
        if self._slow_start:
            self._limit = min(float(self.ceiling), self._limit + 1)
            return
        if sent.round != self._round:
            return
        self._near += 1
        if self._near >= self.current:
            self._limit = min(float(self.ceiling), self._limit + 1)
            self._next_round()

    def _next_round(self) -> None:
        self._round += 1
        self._near = 0
