"""Server capacity: a few workers, a short queue, 429 beyond it, latency that grows with load.

A real server serves a fixed number of requests at once; a few more may wait for a
worker, and the rest are refused with 429 and a Retry-After. Some servers slow down
before they refuse (more in flight than they serve well), and some refuse in bursts
whatever the load (a shared rate limit that others use up). Every request passes
`Capacity.admit` before it is routed and `leave` once answered, so the model also
knows the server's busiest moment: the most requests it held at once.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING

from cube_simulator.answers import Answer, error

if TYPE_CHECKING:
    from collections.abc import Callable


@dataclass(frozen=True)
class CapacityModel:
    """How much a server takes at once; the default takes everything, at one speed."""

    #: Requests served at once (None: as many as arrive).
    workers: int | None = None
    #: Requests that may wait for a worker; more are refused with 429.
    queue: int = 0
    #: Seconds, in the Retry-After of a refusal.
    retry_after: int = 1
    #: With more requests than this in the server, list latency is multiplied...
    slow_above: int | None = None
    #: ...by this.
    slowdown: float = 2.0
    #: (every, lasting): in the last `lasting` seconds of every `every` seconds from the
    #: first request, every request is refused with 429.
    bursts: tuple[float, float] | None = None

    def __post_init__(self) -> None:
        if self.workers is not None and self.workers < 1:
            raise ValueError("workers must be at least 1")
        if self.queue < 0 or self.retry_after < 0:
            raise ValueError("queue and retry_after must not be negative")
        if self.bursts is not None and not 0 < self.bursts[1] < self.bursts[0]:
            raise ValueError("bursts must last less than the period they repeat in")


class Capacity:
    """The model at work: each request is served, queued or refused, and counted."""

    def __init__(self, model: CapacityModel, clock: Callable[[], float] = time.monotonic) -> None:
        self.model = model
        self._clock = clock
        self._changed = threading.Condition()
        self._began: float | None = None
        #: Requests in the server: served or waiting for a worker.
        self.in_flight = 0
        self._serving = 0
        #: The most requests the server held at once.
        self.busiest = 0
        #: Requests refused with 429 (beyond the queue, or in a burst).
        self.refused = 0

    def admit(self) -> Answer | None:
        """Wait for a worker (None), or the 429 that refuses the request now.

        An admitted request must `leave` once answered.
        """
        model = self.model
        with self._changed:
            now = self._clock()
            if self._began is None:
                self._began = now
            full = model.workers is not None and self.in_flight >= model.workers + model.queue
            if full or self._in_burst(now):
                self.refused += 1
                return error(
                    429,
                    f"Request was throttled. Expected available in {model.retry_after} seconds.",
                    (("Retry-After", str(model.retry_after)),),
                )
            self.in_flight += 1
            self.busiest = max(self.busiest, self.in_flight)
            while model.workers is not None and self._serving >= model.workers:
                self._changed.wait()
            self._serving += 1
        return None

    def leave(self) -> None:
        """An admitted request was answered: its worker takes the next one."""
        with self._changed:
            self._serving -= 1
            self.in_flight -= 1
            self._changed.notify()

    def slowdown(self) -> float:
        """What list latency is multiplied by under the load of this moment."""
        model = self.model
        if model.slow_above is not None and self.in_flight > model.slow_above:
            return model.slowdown
        return 1.0

    def _in_burst(self, now: float) -> bool:
        bursts = self.model.bursts
        if bursts is None or self._began is None:
            return False
        every, lasting = bursts
        return (now - self._began) % every >= every - lasting
