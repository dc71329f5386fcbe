"""Progress of a long read: one line per partition every so often, for people and searches.

A partition's `count` is known from its first page, so a read can say how far it is:
`customers: assignment 7: page 40/1001, 20,000/500,123 records (4.0%), 1,950 records/s,
about 4m 6s left (limit: 16 requests at once)`, the last part the run's concurrency
limit as it stands (tap_cube/api/concurrency.py). A line is logged at most every
`interval` seconds and only once that much time has passed since the read began, so a
short partition logs none.
"""

from __future__ import annotations

import math
import time
import typing as t

if t.TYPE_CHECKING:
    import logging
    from collections.abc import Callable

#: Seconds between two progress lines of one partition.
PROGRESS_INTERVAL = 10.0


def duration(seconds: float) -> str:
    """`4m 6s`, `1h 3m`, `12s`: short enough to read at a glance."""
    whole = max(0, round(seconds))
    hours, rest = divmod(whole, 3600)
    minutes, secs = divmod(rest, 60)
    if hours:
        return f"{hours}h {minutes}m"
    if minutes:
        return f"{minutes}m {secs}s"
    return f"{secs}s"


class Progress:
    """The progress of one read of one partition, logged every `interval` seconds."""

    def __init__(
        self,
        logger: logging.Logger,
        where: str,
        *,
        interval: float = PROGRESS_INTERVAL,
        clock: Callable[[], float] = time.monotonic,
        limit: Callable[[], int] | None = None,
    ) -> None:
        """`limit`: the requests the run may have in flight now (None: not said)."""
        self._logger = logger
        self._limit = limit
        self._where = where
        self._interval = interval
        self._clock = clock
        self._started = clock()
        self._last = self._started

    def update(self, pages: int, records: int, count: int | None, page_size: int) -> None:
        """Log a line if `interval` has passed since the last one (or the start)."""
        now = self._clock()
        if now - self._last < self._interval or not count or not page_size:
            return
        self._last = now
        elapsed = now - self._started
        rate = records / elapsed if elapsed > 0 else 0.0
        left = f"about {duration((count - records) / rate)} left" if rate else "time left unknown"
        if self._limit is not None:
            limit = self._limit()
            left += f" (limit: {limit} request{'s' if limit != 1 else ''} at once)"
        self._logger.info(
            "%s: page %d/%d, %s/%s records (%.1f%%), %s records/s, %s",
            self._where,
            pages,
            math.ceil(count / page_size),
            f"{records:,}",
            f"{count:,}",
            100 * records / count,
            f"{rate:,.0f}",
            left,
        )
