"""Page fetching: a shared gate for waits, and a bounded pipeline that fetches pages ahead.

Records must leave the tap in order and from the main thread (state, selection, stream
maps and metrics live there), but the waiting for pages need not: workers fetch the next
pages of the current partition, then the first pages of the following ones, while the
main thread emits. At most twice as many pages as the run's concurrency limit lets go
at once (concurrency.py) are in flight or waiting to be emitted, so memory stays flat
however large an assignment is.
"""

from __future__ import annotations

import contextlib
import threading
import time
import typing as t
from collections import deque
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field, replace

from typing_extensions import override

from tap_cube.api.concurrency import START, ConcurrencyLimit
from tap_cube.api.page import Page
from tap_cube.errors import Cancelled
from tap_cube.settings import MAX_CONCURRENCY

if t.TYPE_CHECKING:
    from collections.abc import Callable, Iterable, Iterator

    from singer_sdk.helpers.types import Context

    from tap_cube.api.concurrency import Sent
    from tap_cube.api.paging import CubeNextLinkPaginator


class RequestGate:
    """Where every request waits before it is sent, and reports how it went.

    A request goes once no pause holds it and the run's concurrency limit has a free
    slot (concurrency.py); it then holds that slot until its answer is read, and the
    answer tells the limit whether to grow or back off. Retry waits of one worker and a
    pause of every request after a 429 both happen here, on a condition that
    cancellation wakes, so a run that is ending is never held up by a waiting worker.
    """

    def __init__(self, limit: ConcurrencyLimit | None = None) -> None:
        #: Shared by every stream's requests (without one: at most MAX_CONCURRENCY, fixed).
        self.limit = limit or ConcurrencyLimit(MAX_CONCURRENCY, adaptive=False)
        # Reentrant: a stop signal's handler cancels from the main thread, which may be
        # holding it.
        self._changed = threading.Condition(threading.RLock())
        self._paused_until = 0.0
        self._in_flight = 0
        self._cancelled = threading.Event()
        self._local = threading.local()

    def pause_all(self, seconds: float) -> None:
        """Hold every request for `seconds` (the server throttled us)."""
        with self._changed:
            self._paused_until = max(self._paused_until, time.monotonic() + seconds)

    def retry_after(self, seconds: float) -> None:
        """Hold this worker's next request for `seconds`."""
        self._local.not_before = time.monotonic() + seconds

    @contextlib.contextmanager
    def turn(self, overloaded: Callable[[BaseException], bool]) -> Iterator[None]:
        """Around one request: waits for its turn, then holds a slot until it is answered.

        An error for which `overloaded` is true backs the limit off; any other ending is
        an answer in the server's own time.
        """
        sent = self.wait_turn()
        try:
            yield
        except BaseException as exc:
            self._release(sent, overloaded=overloaded(exc))
            raise
        self._release(sent, overloaded=False)

    def wait_turn(self) -> Sent:
        """Wait until a request may go, and take a slot for it (`turn` gives it back)."""
        with self._changed:
            while True:
                if self._cancelled.is_set():
                    raise Cancelled
                until = max(self._paused_until, getattr(self._local, "not_before", 0.0))
                remaining = until - time.monotonic()
                if remaining <= 0 and self._in_flight < self.limit.current:
                    self._in_flight += 1
                    return self.limit.sent(self._in_flight)
                self._changed.wait(remaining if remaining > 0 else None)

    def _release(self, sent: Sent, *, overloaded: bool) -> None:
        with self._changed:
            self._in_flight -= 1
            if overloaded:
                self.limit.overloaded(sent)
            else:
                self.limit.answered(sent)
            self._changed.notify_all()

    def cancel(self) -> None:
        self._cancelled.set()
        with self._changed:
            self._changed.notify_all()

    def reset(self) -> None:
        self._cancelled.clear()


class _Deferred(Future[Page]):
    """A future that runs its job only when its result is asked for (no worker threads)."""

    def __init__(self, job: Callable[[], Page]) -> None:
        super().__init__()
        self._job: Callable[[], Page] | None = job

    @override
    def result(self, timeout: float | None = None) -> Page:
        job, self._job = self._job, None
        if job is not None:
            try:
                self.set_result(job())
            except BaseException as exc:
                self.set_exception(exc)
        return super().result(timeout)


@dataclass(eq=False)
class _Plan:
    """What is known and requested of one partition's pages."""

    context: Context
    paginator: CubeNextLinkPaginator
    queue: deque[Future[Page]] = field(default_factory=deque)
    todo: deque[str | None] = field(default_factory=lambda: deque([None]))
    pages_read: int = 0
    last_predicted: int | None = None
    peeked: bool = False


FetchPage = t.Callable[["Context", "str | None"], Page]


class PagePipeline:
    """Fetches the pages of a stream's partitions, in partition order, up to `concurrency`
    at a time (the gate's limit decides how many).

    With a concurrency of 1 nothing runs ahead: each page is fetched when the previous
    one has been emitted, following `next` links exactly as a sequential client would.
    With more, page numbers are predicted from the first page (DRF numbers its pages
    1..ceil(count / page size)), checked against each page's own `next` link as pages
    are emitted; lists whose links carry no page number are followed one page at a time.
    """

    def __init__(
        self,
        fetch: FetchPage,
        *,
        concurrency: int,
        paginator: Callable[[Context], CubeNextLinkPaginator],
        gate: RequestGate,
    ) -> None:
        self._fetch = fetch
        self._paginator = paginator
        self._gate = gate
        self._concurrency = concurrency
        self._plans: list[_Plan] = []
        self._executor: ThreadPoolExecutor | None = (
            ThreadPoolExecutor(max_workers=concurrency, thread_name_prefix="tap-cube-fetch")
            if concurrency > 1
            else None
        )
        gate.limit.forget_floor()  # this stream's pages may take longer or shorter

    def plan(self, contexts: Iterable[Context]) -> None:
        """Declare the partitions that will be read, in the order they will be read."""
        for context in contexts:
            paginator = self._paginator(context)
            self._plans.append(_Plan(context=context, paginator=paginator))

    def pages(self, context: Context, *, again: bool = False) -> Iterator[Page]:
        """Yield the pages of one partition in order, from its first page.

        `again`: a fresh pass over a partition read before, ahead of all others.
        """
        if again:
            self._plans.insert(0, _Plan(context=context, paginator=self._paginator(context)))
        plan = self._take_plan(context)
        try:
            while True:
                self._fill(plan)
                if not plan.queue:
                    return
                yield self._advance(plan, plan.queue.popleft().result())
        finally:
            plan.queue.clear()
            if plan in self._plans:
                self._plans.remove(plan)

    def close(self) -> None:
        """Stop all outstanding work; returns when no worker thread is left."""
        for plan in self._plans:
            for future in plan.queue:
                future.cancel()
        self._plans.clear()
        if self._executor is not None:
            # Wake workers waiting to retry, wait for requests on the wire, then let the
            # gate serve whatever runs next (discovery and streams run one at a time).
            self._gate.cancel()
            self._executor.shutdown(wait=True, cancel_futures=True)
            self._executor = None
            self._gate.reset()

    def _take_plan(self, context: Context) -> _Plan:
        for index, plan in enumerate(self._plans):
            if plan.context == context:
                # Partitions are read in the declared order; anything planned before
                # this one was skipped by the caller and its pages are not wanted.
                for skipped in self._plans[:index]:
                    for future in skipped.queue:
                        future.cancel()
                del self._plans[:index]
                return plan
        self.plan([context])
        return self._plans[-1]

    def _submit(self, plan: _Plan) -> None:
        query = plan.todo.popleft()
        job = self._job(plan.context, query)
        future: Future[Page] = (
            _Deferred(job) if self._executor is None else self._executor.submit(job)
        )
        plan.queue.append(future)

    def _job(self, context: Context, query: str | None) -> Callable[[], Page]:
        return lambda: self._fetch(context, query)

    def _fill(self, current: _Plan) -> None:
        # The partition being emitted may always ask for its next page; otherwise an
        # unfinished list could wait on pages that are prefetched for later partitions.
        if not current.queue and current.todo:
            self._submit(current)
        for plan in self._plans:
            if plan is not current:
                self._peek(plan)
        outstanding = sum(len(plan.queue) for plan in self._plans)
        window = self._window
        for plan in self._plans:
            while plan.todo and outstanding < window:
                self._submit(plan)
                outstanding += 1
            if outstanding >= window:
                return

    @property
    def _window(self) -> int:
        """Pages that may be in flight or waiting to be emitted: two per request the
        limit lets go now, so the prefetch follows the limit and memory stays flat.

        Never fewer than for the limit's START: first pages of the next partitions,
        fetched and waiting, would otherwise leave a small limit's slots unused.
        """
        return 2 * min(self._concurrency, max(self._gate.limit.current, START))

    def _peek(self, plan: _Plan) -> None:
        """Plan a later partition's pages as soon as its first page has arrived.

        Without this, a partition's pages 2..n would only be requested once the main
        thread reached it, leaving the pool idle at every partition boundary.
        """
        if plan.pages_read or plan.peeked or not plan.queue:
            return
        first = plan.queue[0]
        if not first.done() or first.cancelled() or first.exception() is not None:
            return
        plan.peeked = True
        self._predict(plan, first.result())

    def _advance(self, plan: _Plan, page: Page) -> Page:
        """Learn from an emitted page what to fetch next, and check it against the plan;
        the page, with why its link was not followed if it was not."""
        plan.pages_read += 1
        paginator = plan.paginator
        paginator.advance(page)
        if paginator.unusable_link is not None:
            page = replace(page, unusable_link=paginator.unusable_link)
        if plan.pages_read == 1 and (
            plan.last_predicted is not None or (not plan.peeked and self._predict(plan, page))
        ):
            return page
        predicted = plan.last_predicted is not None and plan.pages_read < plan.last_predicted
        if not paginator.finished and not predicted:
            plan.todo.append(paginator.next_query)
        return page

    def _predict(self, plan: _Plan, first: Page) -> bool:
        """Queue every page the first page implies, when page 2 comes by its number
        (tap_cube/api/paging.py `predicted_queries` says which)."""
        if self._concurrency == 1:
            return False
        queries = plan.paginator.predicted_queries(first)
        if not queries:
            return False
        plan.last_predicted = len(queries) + 1
        plan.todo.extend(queries)
        return True


class StreamPipeline:
    """A stream's page pipeline, started when its read starts (with the partitions
    planned then) and ended by `close`; a read after that starts a new one."""

    def __init__(
        self, make: Callable[[], PagePipeline], plan: Callable[[], Iterable[Context]]
    ) -> None:
        """`make`: a new pipeline, not started; `plan`: the partitions whose pages may
        be fetched ahead, in the order they are read, asked as the pipeline starts."""
        self._make = make
        self._plan = plan
        self._pipeline: PagePipeline | None = None

    def started(self) -> PagePipeline:
        """The pipeline, started now if it is not running."""
        if self._pipeline is None:
            self._pipeline = self._make()
            self._pipeline.plan(self._plan())
        return self._pipeline

    def close(self) -> None:
        """End outstanding work; no worker thread outlives this call."""
        if self._pipeline is not None:
            self._pipeline.close()
            self._pipeline = None
