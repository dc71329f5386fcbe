"""Rendered result pages: a small LRU cache, and a thread that renders the next page ahead."""

from __future__ import annotations

import contextlib
import queue
import threading
from collections import OrderedDict
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from collections.abc import Callable


class PageCache:
    """Up to `size` rendered pages; with `prefetch`, a page's successor is rendered ahead."""

    def __init__(self, lock: threading.Lock, *, size: int, prefetch: bool) -> None:
        self.lock = lock
        self._pages: OrderedDict[tuple[object, ...], bytes] = OrderedDict()
        self._size = size
        self._rendering: dict[tuple[object, ...], threading.Event] = {}
        self._prefetch_enabled = prefetch
        self._prefetcher: queue.Queue[Callable[[], object] | None] | None = None

    def start(self) -> None:
        if self._prefetch_enabled:
            jobs: queue.Queue[Callable[[], object] | None] = queue.Queue(maxsize=4)
            self._prefetcher = jobs
            threading.Thread(
                target=self._prefetch_loop, args=(jobs,), name="cube-prefetch", daemon=True
            ).start()

    def stop(self) -> None:
        jobs, self._prefetcher = self._prefetcher, None
        if jobs is not None:
            jobs.put(None)

    def get(self, key: tuple[object, ...], render: Callable[[], bytes]) -> bytes:
        """Render through the page cache; a page being rendered is waited for, not redone."""
        while True:
            with self.lock:
                found = self._pages.get(key)
                if found is not None:
                    self._pages.move_to_end(key)
                    return found
                pending = self._rendering.get(key)
                if pending is None:
                    pending = self._rendering[key] = threading.Event()
                    break
            pending.wait()
        try:
            body = render()
            with self.lock:
                self._pages[key] = body
                while len(self._pages) > self._size:
                    self._pages.popitem(last=False)
        finally:
            with self.lock:
                del self._rendering[key]
            pending.set()
        return body

    def prefetch(self, render: Callable[[], object]) -> None:
        # Render the next page while the client digests this one: sequential paging
        # then finds every page but the first in the cache.
        if self._prefetcher is not None:
            with contextlib.suppress(queue.Full):
                self._prefetcher.put_nowait(render)

    def _prefetch_loop(self, jobs: queue.Queue[Callable[[], object] | None]) -> None:
        while (job := jobs.get()) is not None:
            with contextlib.suppress(Exception):
                job()
