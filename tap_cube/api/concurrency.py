"""How many requests may be in flight at once: an adaptive limit, shared by a whole run.

A run's time is page fetches, and only the server knows how many it can serve at once.
The limit finds out as TCP's congestion window does, within `[1, ceiling]`
(`max_concurrent_requests`):

- It starts where the fixed default used to be (START) and, until the server first
  pushes back, grows by one per answer: it doubles every round trip (slow start),
  while throughput rises. A round trip whose answers per second gained less than half
  of what doubling gives a server that sets the pace ends slow start, and the limit
  goes back to the round's before: where the tap itself sets the pace (a server on the
  same machine answering at once), more requests at once only cost CPU.
- It is judged on the latest answers, as many as the limit, to requests sent since it
  last changed: it is cut by a quarter when their median is well over the latency
  floor (the server is queueing; a median, so that a slow page or two is not taken for
  a queue), and after slow start it grows by one when their mean is near the floor
  and most of them found every slot taken (a limit that is not what holds requests
  back does not grow). A mean, because beyond the server's capacity the mean latency
  grows with the limit (Little's law) even when most pages are served at once.
- It is cut by half at once on a 429, a 503 or 504, a timeout or a reset.
- A cut counts once per round: answers to requests sent before it say nothing of the
  new limit.

The latency floor is the shortest answer of the last FLOOR_MEMORY to 2 x FLOOR_MEMORY
seconds, so a server that became slower for good gets a new floor. Latencies are judged
against a floor of at least TAP_DELAY: a server on the same machine answers in a few
milliseconds, and a tap busy with its records picks answers up tens of milliseconds
later, which is its own delay, not a queue at the server. With
`adaptive_concurrency` off the limit stays at the ceiling; the floor is still kept, for
the partitions' closing lines. Not thread-safe: the request gate (fetch.py) calls it
under its lock.
"""

from __future__ import annotations

import statistics
import time
import typing as t
from collections import deque
from dataclasses import dataclass

from tap_cube.settings import Settings

if t.TYPE_CHECKING:
    from collections.abc import Callable, Mapping

#: Where the limit starts: the number of requests tap-cube used to send at once.
START = 4
#: Answers within this factor of the floor let the limit grow.
NEAR_FLOOR = 1.3
#: A round's median answer beyond this factor of the floor: the server is queueing.
QUEUEING = 1.7
#: The limit after the server refused, failed or timed out, as a share of the limit.
OVERLOAD_CUT = 0.5
#: The limit after an answer took well over its floor, as a share of the limit.
QUEUEING_CUT = 0.75
#: Seconds an answer may wait for the tap's own threads (busy with records) before it
#: is read: latencies are judged against a floor of at least this.
TAP_DELAY = 0.025
#: Seconds a shortest answer stays the floor, at least (at most twice this).
FLOOR_MEMORY = 30.0
#: The share of a higher limit's ideal gain in answers per second that a round trip of
#: slow start must show for it to go on.
GAIN_SHARE = 0.5


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
        #: Slow start's round trip under way: when it began, the limit it began with,
        #: and its answers so far; and the last one's answers per second and limit.
        self._trip_began = clock()
        self._trip_limit = self.current
        self._trip_answers = 0
        self._trip_before: tuple[float, int] | None = None
        #: The latest answers of this round: latency, and whether the request was crowded.
        self._answers: deque[tuple[float, bool]] = deque(maxlen=self.ceiling)
        #: The shortest answers of the current and the previous FLOOR_MEMORY period.
        self._shortest: float | None = None
        self._shortest_before: float | None = None
        self._period_began = clock()

    @classmethod
    def of(cls, config: Mapping[str, t.Any]) -> ConcurrencyLimit:
        """The limit the settings ask for: `max_concurrent_requests` and `adaptive_concurrency`."""
        settings = Settings(config)
        return cls(settings.max_concurrent_requests, adaptive=settings.adaptive_concurrency)

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
        measured = self.floor
        if not self.adaptive or measured is None or sent.round != self._round:
            return
        floor = max(measured, TAP_DELAY)
        if self._slow_start and sent.crowded and latency <= NEAR_FLOOR * floor:
            self._limit = min(float(self.ceiling), self._limit + 1)
        self._answers.append((latency, sent.crowded))
        if self._slow_start and not self._throughput_rose(floor):
            return
        size = self.current
        if len(self._answers) < size:
            return
        last = list(self._answers)[-size:]
        latencies = [latency for latency, _ in last]
        if statistics.median(latencies) > QUEUEING * floor:
            self._cut(sent, QUEUEING_CUT)
        elif (
            not self._slow_start
            and statistics.fmean(latencies) <= NEAR_FLOOR * floor
            and 2 * sum(crowded for _, crowded in last) >= size
            and self._limit < self.ceiling
        ):
            self._limit = min(float(self.ceiling), self._limit + 1)
            self._next_round()

    def _throughput_rose(self, floor: float) -> bool:
        """In slow start, once a round trip is over (as many answers as its limit): whether
        its answers per second gained enough on the last one's, at a lower limit; if not,
        while its answers stayed near the `floor` (so that what held it back was not the
        server, which the latency rules watch), slow start ends at the last one's limit."""
        self._trip_answers += 1
        if self._trip_answers < self._trip_limit:
            return True
        now, answers = self._clock(), self._trip_answers
        rate = answers / max(now - self._trip_began, 1e-9)
        before, self._trip_before = self._trip_before, (rate, self._trip_limit)
        limit = self._trip_limit
        self._trip_began, self._trip_limit, self._trip_answers = now, self.current, 0
        if before is None or limit <= before[1]:
            return True
        rate_before, limit_before = before
        latencies = [latency for latency, _ in self._answers][-answers:]
        if (
            rate >= rate_before * (1 + GAIN_SHARE * (limit / limit_before - 1))
            or statistics.fmean(latencies) > NEAR_FLOOR * floor
        ):
            return True
        self._limit = float(limit_before)
        self._slow_start = False
        self._next_round()
        return False

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

    def _next_round(self) -> None:
        self._round += 1
        self._answers.clear()
