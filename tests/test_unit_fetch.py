"""PagePipeline and RequestGate on their own, with a fake fetch function.

Waits are tiny and only bounded below: the machine running the tests may be busy, so
what is asserted is order and behaviour, never how fast something happened. Waits for
another thread have a generous limit only so that a broken pipeline fails instead of
hanging.
"""

from __future__ import annotations

import math
import threading
import time
import typing as t
from datetime import UTC, datetime
from functools import partial

import pytest

from tap_cube.api.fetch import PagePipeline, RequestGate
from tap_cube.api.page import Page
from tap_cube.api.paging import CubeNextLinkPaginator
from tap_cube.errors import ApiError, Cancelled, PageGoneError

if t.TYPE_CHECKING:
    from collections.abc import Callable, Iterator, Mapping

    from singer_sdk.helpers.types import Context

API = "http://internal:8000/api/v1"
#: How long a test waits for a worker before it calls the pipeline broken.
HANG_GUARD = 30.0


def path_of(assignment: int) -> str:
    return f"/assignments/{assignment}/customers/"


def context(assignment: int) -> Context:
    return {"assignment_id": assignment}


def paginator_for(ctx: Context) -> CubeNextLinkPaginator:
    assignment = ctx["assignment_id"]
    return CubeNextLinkPaginator(f"assignment {assignment}", path_of(assignment), ())


def page(body: dict[str, t.Any]) -> Page:
    return Page(body, arrived_at=datetime.now(UTC))


Key = tuple[int, "str | None"]


def numbered_list(assignment: int, count: int, page_size: int) -> dict[Key, Page]:
    """A DRF list as a dict of (assignment, query) to page, its links numbered."""
    last = max(1, math.ceil(count / page_size))
    pages: dict[Key, Page] = {}
    for number in range(1, last + 1):
        ids = range((number - 1) * page_size, min(number * page_size, count))
        link = f"{API}{path_of(assignment)}?page={number + 1}" if number < last else None
        query = None if number == 1 else f"page={number}"
        body = {"count": count, "next": link, "results": [{"id": i} for i in ids]}
        pages[assignment, query] = page(body)
    return pages


def cursor_list(assignment: int, cursors: list[str]) -> dict[Key, Page]:
    """A list whose links carry no page number: it can only be followed link by link."""
    pages: dict[Key, Page] = {}
    queries: list[str | None] = [None, *(f"cursor={c}" for c in cursors)]
    for n, query in enumerate(queries):
        following = queries[n + 1] if n + 1 < len(queries) else None
        link = f"{API}{path_of(assignment)}?{following}" if following else None
        body = {
            "count": 2 * len(queries),
            "next": link,
            "results": [{"id": 2 * n}, {"id": 2 * n + 1}],
        }
        pages[assignment, query] = page(body)
    return pages


class FakeFetch:
    """Answers (context, query) from a dict, recording each call and its thread.

    `hold` makes the fetch of a key wait until its event is set; an Exception as a
    page is raised instead.
    """

    def __init__(self, pages: Mapping[Key, Page | Exception]) -> None:
        self.pages = dict(pages)
        self.calls: list[tuple[int, str | None, str]] = []
        self.hold: dict[Key, threading.Event] = {}
        self._lock = threading.Lock()

    def __call__(self, ctx: Context, query: str | None) -> Page:
        key: Key = (ctx["assignment_id"], query)
        with self._lock:
            self.calls.append((key[0], query, threading.current_thread().name))
        held = self.hold.get(key)
        if held is not None:
            held.wait(HANG_GUARD)
        outcome = self.pages[key]
        if isinstance(outcome, Exception):
            raise outcome
        return outcome

    def queries(self, assignment: int) -> list[str | None]:
        with self._lock:
            return [query for a, query, _ in self.calls if a == assignment]

    def threads(self) -> set[str]:
        with self._lock:
            return {thread for _, _, thread in self.calls}


def wait_until(condition: Callable[[], bool]) -> bool:
    deadline = time.monotonic() + HANG_GUARD
    while not condition():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.002)
    return True


def fetched_at_least(fetch: FakeFetch, calls: int) -> bool:
    return len(fetch.calls) >= calls


def fetch_threads() -> list[threading.Thread]:
    return [th for th in threading.enumerate() if th.name.startswith("tap-cube-fetch")]


@pytest.fixture
def pipelines() -> Iterator[Callable[..., PagePipeline]]:
    """Pipelines that are closed after the test, whatever it did."""
    made: list[PagePipeline] = []

    def make(fetch: FakeFetch, concurrency: int, gate: RequestGate | None = None) -> PagePipeline:
        pipeline = PagePipeline(
            fetch, concurrency=concurrency, paginator=paginator_for, gate=gate or RequestGate()
        )
        made.append(pipeline)
        return pipeline

    yield make
    for pipeline in made:
        pipeline.close()


def ids(pages: list[Page]) -> list[int]:
    return [record["id"] for p in pages for record in p.records]


def test_concurrency_one_fetches_nothing_ahead_and_follows_links_in_order(pipelines):
    fetch = FakeFetch({**numbered_list(1, 5, 2), **cursor_list(2, ["b", "c"])})
    pipeline = pipelines(fetch, 1)
    pipeline.plan([context(1), context(2)])
    for yielded, _ in enumerate(pipeline.pages(context(1)), start=1):
        # Each page is fetched once the one before it was emitted, and nothing else.
        assert len(fetch.calls) == yielded
    assert fetch.queries(1) == [None, "page=2", "page=3"]
    assert fetch.queries(2) == []
    read = list(pipeline.pages(context(2)))
    assert fetch.queries(2) == [None, "cursor=b", "cursor=c"]
    assert ids(read) == [0, 1, 2, 3, 4, 5]
    # No worker threads: the fetches ran where the pages were asked for.
    assert fetch.threads() == {threading.current_thread().name}
    assert fetch_threads() == []


@pytest.mark.parametrize("concurrency", [1, 3])
def test_pages_come_in_order_with_their_records(pipelines, concurrency):
    fetch = FakeFetch(
        {**numbered_list(1, 9, 2), **numbered_list(2, 0, 2), **numbered_list(3, 3, 2)}
    )
    pipeline = pipelines(fetch, concurrency)
    pipeline.plan([context(1), context(2), context(3)])
    assert ids(list(pipeline.pages(context(1)))) == list(range(9))
    assert ids(list(pipeline.pages(context(2)))) == []
    assert ids(list(pipeline.pages(context(3)))) == [0, 1, 2]
    for assignment in (1, 2, 3):
        queries = fetch.queries(assignment)
        assert len(queries) == len(set(queries)), queries  # each page fetched once


def test_concurrency_above_one_fetches_in_worker_threads(pipelines):
    fetch = FakeFetch(numbered_list(1, 9, 2))
    pipeline = pipelines(fetch, 3)
    assert ids(list(pipeline.pages(context(1)))) == list(range(9))
    threads = fetch.threads()
    assert threads
    assert all(name.startswith("tap-cube-fetch") for name in threads), threads


def test_page_numbers_are_predicted_from_the_first_pages_count_and_size(pipelines):
    # 9 rows by 2: pages 2 to 5. Page 2 waits until pages 3 to 5 were asked for, which
    # only happens when they are predicted, not followed link by link.
    fetch = FakeFetch(numbered_list(1, 9, 2))
    release = threading.Event()
    fetch.hold[1, "page=2"] = release
    pipeline = pipelines(fetch, 4)
    pages = pipeline.pages(context(1))
    first = next(pages)
    assert first.count == 9
    predicted = ["page=2", "page=3", "page=4", "page=5"]

    def release_once_all_asked() -> None:
        if wait_until(lambda: set(predicted) <= set(fetch.queries(1))):
            release.set()

    asked = threading.Thread(target=release_once_all_asked)
    asked.start()
    rest = list(pages)
    asked.join()
    assert release.is_set(), fetch.queries(1)
    assert ids([first, *rest]) == list(range(9))
    assert sorted(q for q in fetch.queries(1) if q) == predicted  # no page 6


def test_links_without_page_numbers_are_followed_one_page_at_a_time(pipelines):
    fetch = FakeFetch(cursor_list(1, ["b", "c", "d"]))
    pipeline = pipelines(fetch, 4)
    for yielded, _ in enumerate(pipeline.pages(context(1)), start=1):
        # The next page is only known from this one's link.
        assert len(fetch.calls) == yielded
    assert fetch.queries(1) == [None, "cursor=b", "cursor=c", "cursor=d"]


def test_the_next_partitions_first_page_is_fetched_ahead(pipelines):
    fetch = FakeFetch({**numbered_list(1, 2, 2), **numbered_list(2, 5, 2)})
    pipeline = pipelines(fetch, 2)
    pipeline.plan([context(1), context(2)])
    first = pipeline.pages(context(1))
    assert ids([next(first)]) == [0, 1]
    # While partition 1 is emitted, partition 2's first page is on its way.
    assert wait_until(lambda: None in fetch.queries(2)), fetch.calls
    assert list(first) == []
    assert ids(list(pipeline.pages(context(2)))) == [0, 1, 2, 3, 4]
    assert fetch.queries(2).count(None) == 1  # the page fetched ahead was used


def test_a_partition_not_planned_is_read_all_the_same(pipelines):
    fetch = FakeFetch(numbered_list(7, 5, 2))
    pipeline = pipelines(fetch, 2)
    assert ids(list(pipeline.pages(context(7)))) == [0, 1, 2, 3, 4]


@pytest.mark.parametrize("concurrency", [1, 3])
def test_partitions_planned_but_skipped_are_not_read(pipelines, concurrency):
    fetch = FakeFetch(
        {**numbered_list(1, 1, 2), **numbered_list(2, 5, 2), **numbered_list(3, 3, 2)}
    )
    pipeline = pipelines(fetch, concurrency)
    pipeline.plan([context(1), context(2), context(3)])
    assert ids(list(pipeline.pages(context(3)))) == [0, 1, 2]
    assert fetch.queries(1) == fetch.queries(2) == []


@pytest.mark.parametrize("concurrency", [1, 3])
def test_again_reads_the_partition_from_its_first_page(pipelines, concurrency):
    fetch = FakeFetch({**numbered_list(1, 5, 2), **numbered_list(2, 3, 2)})
    pipeline = pipelines(fetch, concurrency)
    pipeline.plan([context(1), context(2)])
    assert ids(list(pipeline.pages(context(1)))) == [0, 1, 2, 3, 4]
    assert ids(list(pipeline.pages(context(1), again=True))) == [0, 1, 2, 3, 4]
    assert fetch.queries(1).count(None) == 2
    # A read left half-way is read again from the start too.
    halfway = pipeline.pages(context(1), again=True)
    next(halfway)
    next(halfway)
    halfway.close()
    assert ids(list(pipeline.pages(context(1), again=True))) == [0, 1, 2, 3, 4]
    # The partition planned after it is still read.
    assert ids(list(pipeline.pages(context(2)))) == [0, 1, 2]


def test_close_leaves_no_worker_thread(pipelines):
    fetch = FakeFetch({**numbered_list(1, 40, 2), **numbered_list(2, 40, 2)})
    pipeline = pipelines(fetch, 4)
    pipeline.plan([context(1), context(2)])
    pages = pipeline.pages(context(1))
    next(pages)
    assert fetch_threads()
    pipeline.close()
    assert fetch_threads() == []
    pages.close()


def test_close_wakes_a_worker_waiting_to_retry(pipelines):
    gate = RequestGate()
    fetch = FakeFetch({**numbered_list(1, 2, 2), **numbered_list(2, 2, 2)})
    waiting = threading.Event()
    answer = fetch.pages[2, None]

    def fetch_or_wait(ctx: Context, query: str | None) -> Page:
        if ctx["assignment_id"] == 2:
            # Partition 2's first page, fetched ahead, waits out a long Retry-After.
            gate.retry_after(3600)
            waiting.set()
            gate.wait_turn()
            assert isinstance(answer, Page)
            return answer
        return fetch(ctx, query)

    pipeline = PagePipeline(fetch_or_wait, concurrency=2, paginator=paginator_for, gate=gate)
    pipeline.plan([context(1), context(2)])
    assert ids(list(pipeline.pages(context(1)))) == [0, 1]
    assert waiting.wait(HANG_GUARD)
    pipeline.close()
    assert fetch_threads() == []
    # The gate serves whatever runs next.
    gate.wait_turn()


@pytest.mark.parametrize("concurrency", [2, 3])
def test_the_window_bounds_pages_fetched_ahead_to_twice_the_concurrency(pipelines, concurrency):
    fetch = FakeFetch(numbered_list(1, 60, 2))
    pipeline = pipelines(fetch, concurrency)
    window = 2 * concurrency
    for yielded, _ in enumerate(pipeline.pages(context(1)), start=1):
        if yielded == 1:
            # The first page says how many there are: nothing was fetched before it.
            assert len(fetch.calls) == 1
            continue
        if yielded - 1 + window > 30:
            break
        # Workers ran ahead until the window was full: the page just emitted and
        # window - 1 more, in flight or waiting; then they wait for the reader.
        expected = yielded - 1 + window
        assert wait_until(partial(fetched_at_least, fetch, expected)), (yielded, fetch.calls)
        time.sleep(0.005)
        assert len(fetch.calls) == expected


@pytest.mark.parametrize("concurrency", [1, 3])
def test_a_page_whose_link_is_unusable_says_why(pipelines, concurrency):
    # The notes' data-owner example: each page's `next` is the request itself.
    pages: dict[Key, Page | Exception] = {}
    for number, query in enumerate([None, "page=2", "page=3"], start=1):
        link = f"{API}{path_of(1)}" + (f"?{query}" if query else "")
        records = [{"id": i} for i in range(2 * number - 2, min(2 * number, 5))]
        pages[1, query] = page({"count": 5, "next": link, "results": records})
    fetch = FakeFetch(pages)
    pipeline = pipelines(fetch, concurrency)
    read = list(pipeline.pages(context(1)))
    assert ids(read) == [0, 1, 2, 3, 4]
    assert [p.unusable_link for p in read] == [
        "repeats the request",
        "repeats the request (?page=2)",
        "repeats the request (?page=3)",
    ]
    assert sorted(q or "" for q in fetch.queries(1)) == ["", "page=2", "page=3"]


@pytest.mark.parametrize("concurrency", [1, 3])
def test_errors_of_fetch_come_in_page_order(pipelines, concurrency):
    pages: dict[Key, Page | Exception] = {**numbered_list(1, 10, 2)}
    pages[1, "page=3"] = PageGoneError("assignment 1: page ?page=3 no longer exists")
    pages[1, "page=4"] = ApiError("a later failure")
    fetch = FakeFetch(pages)
    pipeline = pipelines(fetch, concurrency)
    read: list[Page] = []
    with pytest.raises(PageGoneError, match=r"page=3 no longer exists"):
        read.extend(pipeline.pages(context(1)))
    assert ids(read) == [0, 1, 2, 3]


def test_an_error_of_an_unusable_link_stops_the_partition(pipelines):
    # A link that repeats the request on a page without a count: nothing to read on by.
    body = {"next": f"{API}{path_of(1)}", "results": [{"id": 1}]}
    fetch = FakeFetch({(1, None): page(body)})
    pipeline = pipelines(fetch, 2)
    with pytest.raises(ApiError, match=r"^assignment 1: the server's next link repeats"):
        list(pipeline.pages(context(1)))


def test_gate_lets_a_request_go_when_nothing_holds_it():
    gate = RequestGate()
    gate.wait_turn()


def test_gate_retry_after_holds_this_thread_at_least_that_long():
    gate = RequestGate()
    gate.retry_after(0.03)
    start = time.monotonic()
    gate.wait_turn()
    assert time.monotonic() - start >= 0.03


def test_gate_retry_after_holds_only_the_thread_that_asked():
    gate = RequestGate()
    gate.retry_after(3600)
    other = threading.Thread(target=gate.wait_turn)
    other.start()
    other.join(HANG_GUARD)
    alive = other.is_alive()
    gate.cancel()  # frees the thread should it wait after all
    assert not alive


def test_gate_pause_all_holds_every_thread_at_least_that_long():
    gate = RequestGate()
    gate.pause_all(0.05)
    gate.pause_all(0.001)  # a shorter pause does not shorten the one in force
    started = time.monotonic()
    waited: list[float] = []

    def wait() -> None:
        gate.wait_turn()
        waited.append(time.monotonic())

    other = threading.Thread(target=wait)
    other.start()
    gate.wait_turn()
    here = time.monotonic()
    other.join(HANG_GUARD)
    assert here - started >= 0.05
    assert len(waited) == 1
    assert waited[0] - started >= 0.05


def test_gate_cancel_wakes_a_waiting_thread_with_cancelled():
    gate = RequestGate()
    outcome: list[BaseException | None] = []
    waiting = threading.Event()

    def wait() -> None:
        gate.retry_after(3600)
        waiting.set()
        try:
            gate.wait_turn()
        except Cancelled as exc:
            outcome.append(exc)
        else:
            outcome.append(None)

    other = threading.Thread(target=wait)
    other.start()
    assert waiting.wait(HANG_GUARD)
    time.sleep(0.01)  # let it reach the wait
    gate.cancel()
    other.join(HANG_GUARD)
    assert not other.is_alive()
    assert len(outcome) == 1
    assert isinstance(outcome[0], Cancelled)


def test_gate_cancelled_refuses_every_request_until_reset():
    gate = RequestGate()
    gate.cancel()
    with pytest.raises(Cancelled):
        gate.wait_turn()
    with pytest.raises(Cancelled):
        gate.wait_turn()
    gate.reset()
    gate.wait_turn()


@pytest.mark.parametrize("concurrency", [1, 3])
def test_an_error_of_a_page_fetched_ahead_waits_for_its_partition(pipelines, concurrency):
    pages: dict[Key, Page | Exception] = {**numbered_list(1, 5, 2)}
    pages[2, None] = ApiError("assignment 2: the server answered 400")
    fetch = FakeFetch(pages)
    pipeline = pipelines(fetch, concurrency)
    pipeline.plan([context(1), context(2)])
    assert ids(list(pipeline.pages(context(1)))) == [0, 1, 2, 3, 4]
    with pytest.raises(ApiError, match=r"^assignment 2: "):
        next(pipeline.pages(context(2)))
