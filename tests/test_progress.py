"""Progress lines of long reads: how far each partition is, every so often, never for short ones."""

from __future__ import annotations

import logging
import re

from tap_cube.progress import Progress
from tests.conftest import plain_assignment
from tests.test_concurrency import customers_stream

LINE = re.compile(
    r"customers: assignment (\d+): page (\d+)/(\d+), ([\d,]+)/([\d,]+) records "
    r"\((\d+\.\d)%\), ([\d,]+) records/s, (about .* left|time left unknown)"
    r"(?: \(limit: \d+ requests? at once\))?$"
)


class FakeClock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def test_a_line_says_pages_records_percent_rate_and_time_left(caplog):
    clock = FakeClock()
    logger = logging.getLogger("test-progress")
    progress = Progress(logger, "customers: assignment 7", clock=clock)
    clock.now = 20_000 / 1950
    with caplog.at_level(logging.INFO, logger="test-progress"):
        progress.update(40, 20_000, 500_123, 500)
    assert caplog.messages == [
        "customers: assignment 7: page 40/1001, 20,000/500,123 records (4.0%), "
        "1,950 records/s, about 4m 6s left"
    ]


def test_a_line_ends_with_the_concurrency_limit_as_it_stands(caplog):
    clock = FakeClock()
    limits = iter([12, 1])
    logger = logging.getLogger("test-progress")
    progress = Progress(logger, "customers: assignment 7", clock=clock, limit=lambda: next(limits))
    with caplog.at_level(logging.INFO, logger="test-progress"):
        for page in (1, 2):
            clock.now += 10
            progress.update(page, page * 500, 5000, 500)
    assert [m.rsplit(", ", 1)[1] for m in caplog.messages] == [
        "about 1m 30s left (limit: 12 requests at once)",
        "about 1m 20s left (limit: 1 request at once)",
    ]
    assert all(LINE.match(m) for m in caplog.messages)


def test_never_more_often_than_the_interval_and_not_for_short_reads(caplog):
    clock = FakeClock()
    logger = logging.getLogger("test-progress")
    with caplog.at_level(logging.INFO, logger="test-progress"):
        short = Progress(logger, "customers: assignment 8", clock=clock)
        for page in range(1, 4):  # a whole partition in 9 s: no line at all
            clock.now += 3
            short.update(page, page * 500, 1500, 500)
        assert caplog.messages == []

        clock.now = 0.0
        long = Progress(logger, "customers: assignment 7", clock=clock)
        for page in range(1, 21):  # a page every 3 s for 60 s
            clock.now += 3
            long.update(page, page * 500, 10_000, 500)
    pages = [int(LINE.match(m)[2]) for m in caplog.messages]  # type: ignore[index]
    assert pages == [4, 8, 12, 16, 20]  # at 12, 24, 36, 48 and 60 s: every 10 s at most


def test_a_slow_read_under_concurrency_reports_each_partition_correctly(simulator, caplog):
    # Latency makes pages of both assignments arrive interleaved with 4 workers.
    sim = simulator([plain_assignment(1, 2300), plain_assignment(2, 1400)], latency=0.05)
    stream = customers_stream(sim, [1, 2], max_concurrent_requests=4)
    stream.progress_interval = 0  # every page, so the test needs no clock
    emitted: dict[int, int] = {1: 0, 2: 0}
    with caplog.at_level(logging.INFO):
        for context in stream.partitions:
            for _record in stream.get_records(context):
                emitted[context["assignment_id"]] += 1
    lines = [LINE.match(m) for m in caplog.messages if "records/s" in m]
    assert lines
    assert all(lines)
    by_assignment: dict[int, list[tuple[int, int, int, int, float]]] = {1: [], 2: []}
    for match in lines:
        assert match is not None
        assignment, page, pages, records, count = (
            int(match[i].replace(",", "")) for i in range(1, 6)
        )
        by_assignment[assignment].append((page, pages, records, count, float(match[6])))
    for assignment, total in ((1, 2300), (2, 1400)):
        rows = by_assignment[assignment]
        pages_total = -(-total // 500)
        # One line per page, in order, each with this partition's own figures.
        assert [row[0] for row in rows] == list(range(1, pages_total + 1))
        for page, pages, records, count, percent in rows:
            assert (pages, count) == (pages_total, total)
            assert records == min(page * 500, total)
            assert percent == round(100 * records / total, 1)
    assert emitted == {1: 2300, 2: 1400}
