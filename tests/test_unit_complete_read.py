"""CompleteRead on its own: a fake page source, plain record functions, no HTTP."""

from __future__ import annotations

import logging
import typing as t
from datetime import UTC, datetime

import pytest

from tap_cube.api.page import Page
from tap_cube.api.paging import MAX_PAGES_WITHOUT_COUNT
from tap_cube.errors import ApiError, IncompleteError, PageGoneError
from tap_cube.records.completeness import (
    MAX_REREADS,
    CompleteRead,
    DeletionRule,
    PartitionList,
    ReadSummary,
    RecordPath,
)
from tap_cube.records.deletions import DELETED_AT, decode_ids, encode_ids
from tap_cube.records.seen import SeenIds

if t.TYPE_CHECKING:
    from collections.abc import Iterable, Iterator, Sequence

Record = dict[str, t.Any]
LOGGER = logging.getLogger("test")
INTEGER_ID = {"type": ["integer"]}
TEXT_ID = {"type": ["string"]}


def page(
    ids: Iterable[object],
    count: int | None,
    *,
    next: object = None,
    unusable_link: str | None = None,
) -> Page:
    results = [{"id": i, "name": f"row {i}"} for i in ids]
    body: dict[str, t.Any] = {"next": next, "results": results}
    if count is not None:
        body["count"] = count
    return Page(body, arrived_at=datetime.now(UTC), unusable_link=unusable_link)


def listed(pages: list[list[object]], count: int) -> list[Page | Exception]:
    """A read of DRF pages holding `pages`' ids, each with `count`, linked in order."""
    return [
        page(ids, count, next=f"?page={n + 2}" if n + 1 < len(pages) else None)
        for n, ids in enumerate(pages)
    ]


class Source:
    """The page source of one partition: one list of pages per read, the last one
    repeating; an exception in a list is raised when its turn comes."""

    def __init__(self, *reads: Sequence[Page | Exception]) -> None:
        self.reads = reads
        #: `again` of each read asked for.
        self.calls: list[bool] = []

    def __call__(self, again: bool = False) -> Iterator[Page]:
        self.calls.append(again)
        return self._pages(self.reads[min(len(self.calls), len(self.reads)) - 1])

    @staticmethod
    def _pages(read: Sequence[Page | Exception]) -> Iterator[Page]:
        for item in read:
            if isinstance(item, Exception):
                raise item
            yield item


def partition(*, paginated: bool = True, id_field: str | None = "id") -> PartitionList:
    return PartitionList(
        stream_name="customers",
        where="assignment 7",
        logger=LOGGER,
        id_field=id_field,
        paginated=paginated,
        progress_interval=3600.0,
    )


def by_id() -> t.Callable[[Record], object]:
    return lambda record: record.get("id")


PREPARED: list[object] = []


def path(identity: t.Callable[[], t.Callable[[Record], object]] = by_id) -> RecordPath:
    return RecordPath(
        keyer=identity,
        prepare=lambda record: PREPARED.append(record.get("id")),
        fit=lambda record: {**record, "fitted": True},
    )


def ids_of(records: Iterable[Record]) -> list[object]:
    return [record["id"] for record in records]


def delivered(*ids: int | str) -> dict[str, str]:
    """Delivered ids as a partition's state holds them."""
    with SeenIds() as seen:
        for key in ids:
            seen.add(key)
        return encode_ids(seen.small_numbers, seen.other_ids())


def decoded(encoded: dict[str, t.Any] | None) -> set[object]:
    numbers, others = decode_ids(encoded)
    return {*numbers, *others}


@pytest.fixture(autouse=True)
def _no_prepared_left() -> None:
    PREPARED.clear()


def test_a_list_read_once_yields_each_record_fitted():
    source = Source(listed([[1, 2], [3, 4], [5]], count=5))
    read = CompleteRead(source, partition(), path())
    records = list(read.records())
    assert ids_of(records) == [1, 2, 3, 4, 5]
    assert all(record["fitted"] for record in records)
    assert PREPARED == [1, 2, 3, 4, 5]
    assert source.calls == [False]
    assert read.summary == ReadSummary(pages=3, delivered=5)
    assert read.pages == 3


def test_a_row_served_twice_is_emitted_once_and_counted(caplog):
    # A row shifted onto the next page (another was added before it, one removed after).
    source = Source(listed([[1, 2], [2, 3]], count=3))
    read = CompleteRead(source, partition(), path())
    with caplog.at_level(logging.WARNING, logger="test"):
        assert ids_of(read.records()) == [1, 2, 3]
    assert read.summary.duplicates == 1
    assert read.summary.delivered == 3
    assert not read.summary.reread
    assert source.calls == [False]
    assert any("1 records were served twice" in m for m in caplog.messages), caplog.messages


def test_a_count_change_reads_again_skipping_what_was_emitted(caplog):
    first = [page([1, 2], 4, next="?page=2"), page([4, 5], 5, next="?page=3")]
    second = listed([[1, 2], [3, 4], [5]], count=5)
    source = Source(first, second)
    read = CompleteRead(source, partition(), path())
    with caplog.at_level(logging.WARNING, logger="test"):
        records = list(read.records())
    assert ids_of(records) == [1, 2, 4, 5, 3]
    assert source.calls == [False, True]
    assert read.summary.reread
    assert read.summary.delivered == 5
    assert read.summary.pages == 5
    # What the second read served again is no duplicate: it was expected again.
    assert read.summary.duplicates == 0
    warned = [m for m in caplog.messages if "changed while it was read" in m]
    assert len(warned) == 1
    assert "saw the count change from 4 to 5" in warned[0]
    assert "skipping the 4 records already emitted" in warned[0]


def test_a_short_read_reads_again(caplog):
    source = Source(listed([[1, 2], [3]], count=4), listed([[1, 2], [3, 4]], count=4))
    read = CompleteRead(source, partition(), path())
    with caplog.at_level(logging.WARNING, logger="test"):
        assert ids_of(read.records()) == [1, 2, 3, 4]
    assert source.calls == [False, True]
    assert any("served 3 of the 4 records its count announced" in m for m in caplog.messages)


def test_a_list_that_keeps_changing_stops_the_run():
    source = Source(listed([[1, 2], [3]], count=4))
    read = CompleteRead(source, partition(), path())
    emitted: list[Record] = []
    with pytest.raises(IncompleteError) as raised:
        emitted.extend(read.records())
    assert source.calls == [False] + [True] * MAX_REREADS
    assert ids_of(emitted) == [1, 2, 3]
    message = str(raised.value)
    assert "\n" not in message
    assert message.startswith("assignment 7: the list kept changing while it was read")
    assert f"read {MAX_REREADS + 1} times" in message
    assert "served 3 of the 4 records" in message


def test_unusable_links_that_do_not_add_up_say_so(caplog):
    why = "repeats the request"
    read_ = [page([1, 2], 5, next="?", unusable_link=why), page([3], 5, unusable_link=why)]
    source = Source(read_)
    read = CompleteRead(source, partition(), path())
    with caplog.at_level(logging.WARNING, logger="test"), pytest.raises(IncompleteError) as raised:
        list(read.records())
    assert "the server's next links are unusable and reading on by page number" in str(raised.value)
    # The unusable links are warned about once, not on every page or read.
    warned = [m for m in caplog.messages if "next links are unusable (page 1's link" in m]
    assert len(warned) == 1
    assert warned[0].startswith("customers: assignment 7: ")


def test_a_page_gone_mid_read_reads_again(caplog):
    gone = PageGoneError("assignment 7: page ?page=3 no longer exists (404 Invalid page.)")
    first: list[Page | Exception] = [*listed([[1, 2], [3, 4], [5]], count=5)[:2], gone]
    source = Source(first, listed([[1, 2], [3, 4], [6]], count=5))
    read = CompleteRead(source, partition(), path())
    with caplog.at_level(logging.WARNING, logger="test"):
        assert ids_of(read.records()) == [1, 2, 3, 4, 6]
    assert source.calls == [False, True]
    assert any(
        "ended at page 3, which the server no longer has (404)" in m for m in caplog.messages
    )


def test_an_empty_page_that_links_on_reads_again(caplog):
    first = [page([1, 2], 4, next="?page=2"), page([], 4, next="?page=3")]
    source = Source(first, listed([[1, 2], [3, 4]], count=4))
    read = CompleteRead(source, partition(), path())
    with caplog.at_level(logging.WARNING, logger="test"):
        assert ids_of(read.records()) == [1, 2, 3, 4]
    assert source.calls == [False, True]
    assert any("got an empty page 2 that links to a next one" in m for m in caplog.messages)


def test_a_record_without_its_key_stops_the_run():
    rows = page([1], 2, next="?page=2")
    keyless = Page(
        {"count": 2, "next": None, "results": [{"name": "no id"}]}, arrived_at=datetime.now(UTC)
    )
    read = CompleteRead(Source([rows, keyless]), partition(), path())
    emitted: list[Record] = []
    with pytest.raises(ApiError) as raised:
        emitted.extend(read.records())
    assert ids_of(emitted) == [1]
    message = str(raised.value)
    assert "\n" not in message
    assert message.startswith("assignment 7: the server sent a record without id;")


def test_more_pages_than_the_count_allows_stops_the_run():
    # A server that serves new rows on page after page, beyond its count of 2 in pages
    # of 2: 2 * 1 + 2 pages are allowed.
    looping = [page([2 * n + 1, 2 * n + 2], 2, next=f"?page={n + 2}") for n in range(10)]
    source = Source(looping)
    read = CompleteRead(source, partition(), path())
    emitted: list[Record] = []
    with pytest.raises(ApiError) as raised:
        emitted.extend(read.records())
    assert ids_of(emitted) == list(range(1, 9))
    assert source.calls == [False]
    message = str(raised.value)
    assert "\n" not in message
    assert "more pages than its count of 2 allows (5 pages of up to 2 rows)" in message


def test_an_id_repeated_in_another_form_stops_the_run():
    # "5" and 5 are one key once fitted to an integer column: two records, one row.
    def as_integer() -> t.Callable[[Record], object]:
        return lambda record: int(record["id"])

    source = Source(listed([["5", 6], [5]], count=3))
    read = CompleteRead(source, partition(), path(as_integer))
    with pytest.raises(ApiError, match=r"^assignment 7: the server lists id 5 and another"):
        list(read.records())


def test_deletions_are_the_ids_delivered_before_and_not_served(caplog):
    rule = DeletionRule(delivered_before=delivered(1, 2, 3, 4), max_share=0.5, id_schema=INTEGER_ID)
    source = Source(listed([[1, 2], [4, 5]], count=4))
    read = CompleteRead(source, partition(), path(), rule)
    with caplog.at_level(logging.INFO, logger="test"):
        records = list(read.records())
    assert ids_of(records) == [1, 2, 4, 5, 3]
    deletion = records[-1]
    assert set(deletion) == {"id", DELETED_AT}
    assert deletion["id"] == 3
    assert datetime.fromisoformat(deletion[DELETED_AT]).tzinfo is not None
    assert all(DELETED_AT not in record for record in records[:-1])
    assert read.summary.deleted == 1
    assert read.summary.withheld is None
    assert decoded(read.summary.delivered_ids) == {1, 2, 4, 5}
    assert any("1 records are no longer served; marked deleted" in m for m in caplog.messages)


def test_deletions_of_text_ids_keep_them_as_text():
    rule = DeletionRule(delivered_before=delivered("a", "b", "c"), max_share=0.5, id_schema=TEXT_ID)
    source = Source(listed([["a", "c"]], count=2))
    read = CompleteRead(source, partition(), path(), rule)
    records = list(read.records())
    assert [(r["id"], DELETED_AT in r) for r in records] == [
        ("a", False),
        ("c", False),
        ("b", True),
    ]
    assert decoded(read.summary.delivered_ids) == {"a", "c"}


def test_a_first_read_with_deletions_keeps_what_it_served():
    rule = DeletionRule(delivered_before=None, max_share=0.5, id_schema=INTEGER_ID)
    read = CompleteRead(Source(listed([[1, 2], [3]], count=3)), partition(), path(), rule)
    assert ids_of(read.records()) == [1, 2, 3]
    assert read.summary.deleted == 0
    assert decoded(read.summary.delivered_ids) == {1, 2, 3}


def test_a_row_emitted_before_a_reread_and_gone_after_it_is_marked_deleted():
    # Row 1 was emitted, then removed: the complete (second) read no longer serves it.
    first: list[Page | Exception] = [page([1, 2], 3, next="?page=2"), PageGoneError("gone")]
    source = Source(first, listed([[2, 3]], count=2))
    rule = DeletionRule(delivered_before=None, max_share=0.5, id_schema=INTEGER_ID)
    read = CompleteRead(source, partition(), path(), rule)
    records = list(read.records())
    assert [(r["id"], DELETED_AT in r) for r in records] == [
        (1, False),
        (2, False),
        (3, False),
        (1, True),
    ]
    assert read.summary.deleted == 1
    assert decoded(read.summary.delivered_ids) == {2, 3}


@pytest.mark.parametrize(
    ("served", "empty"),
    [([1, 2], ""), ([], " (the list came back empty)")],
)
def test_more_deletions_than_max_share_deletes_nothing(caplog, served, empty):
    before = delivered(*range(1, 11))
    rule = DeletionRule(delivered_before=before, max_share=0.5, id_schema=INTEGER_ID)
    source = Source([page(served, len(served))])
    read = CompleteRead(source, partition(), path(), rule)
    with caplog.at_level(logging.WARNING, logger="test"):
        records = list(read.records())
    assert ids_of(records) == served
    assert all(DELETED_AT not in record for record in records)
    assert read.summary.deleted == 0
    removed = 10 - len(served)
    assert read.summary.withheld == (
        f"assignment 7: {removed} of the 10 rows it delivered before would be marked deleted{empty}"
    )
    # Every id delivered so far is kept: a later complete read may still delete them.
    assert decoded(read.summary.delivered_ids) == set(range(1, 11))
    assert any("max_deletion_share (0.5)" in m for m in caplog.messages)


def test_deletions_up_to_max_share_are_made():
    before = delivered(*range(1, 11))
    rule = DeletionRule(delivered_before=before, max_share=0.5, id_schema=INTEGER_ID)
    source = Source(listed([[1, 2, 3, 4, 5]], count=5))
    read = CompleteRead(source, partition(), path(), rule)
    records = list(read.records())
    assert sorted(r["id"] for r in records if DELETED_AT in r) == [6, 7, 8, 9, 10]
    assert read.summary.deleted == 5
    assert read.summary.withheld is None


def test_a_list_without_pages_is_complete_without_a_count():
    # A plain JSON list, wrapped as one page (tap_cube/api/responses.py decode_body).
    source = Source([page([1, 2, 3], 5)])
    read = CompleteRead(source, partition(paginated=False), path())
    assert ids_of(read.records()) == [1, 2, 3]
    assert source.calls == [False]
    assert not read.summary.reread


def test_a_paginated_list_without_a_count_is_taken_as_served():
    source = Source([page([1, 2], None, next="?page=2"), page([3], None)])
    read = CompleteRead(source, partition(), path())
    assert ids_of(read.records()) == [1, 2, 3]
    assert source.calls == [False]


def test_each_read_gets_a_fresh_identity_function():
    made: list[int] = []

    def identity() -> t.Callable[[Record], object]:
        made.append(1)
        return by_id()

    source = Source(listed([[1]], count=2), listed([[1, 2]], count=2))
    read = CompleteRead(source, partition(), path(identity))
    assert ids_of(read.records()) == [1, 2]
    assert len(made) == 2


# --- reads that cannot be checked, and reads that would not end ---------------------------


def uncounted(pages: list[list[object]]) -> list[Page | Exception]:
    """A read of pages without a `count`, linked in order, the last linking nowhere."""
    return [
        page(ids, None, next=f"?page={n + 2}" if n + 1 < len(pages) else None)
        for n, ids in enumerate(pages)
    ]


def test_a_read_without_a_count_deletes_nothing_and_keeps_every_id(caplog):
    # The server's links end after 2 of its 3 pages: 5 and 6 are live, just not served.
    before = delivered(*range(1, 7))
    rule = DeletionRule(delivered_before=before, max_share=0.5, id_schema=INTEGER_ID)
    source = Source(uncounted([[1, 2], [3, 4, 7]]))
    read = CompleteRead(source, partition(), path(), rule)
    with caplog.at_level(logging.INFO, logger="test"):
        records = list(read.records())
    assert ids_of(records) == [1, 2, 3, 4, 7]
    assert all(DELETED_AT not in record for record in records)
    assert read.summary.deleted == 0
    assert read.summary.withheld is None  # nothing to fail on: no deletion was due
    # The ids delivered before stay, with the new one: a later checked read deletes.
    assert decoded(read.summary.delivered_ids) == {1, 2, 3, 4, 5, 6, 7}
    said = [m for m in caplog.messages if "no count" in m]
    assert len(said) == 1, caplog.messages
    assert said[0].startswith("customers: assignment 7: ")
    assert "nothing is marked deleted" in said[0]


def test_a_first_read_without_a_count_keeps_what_it_served(caplog):
    rule = DeletionRule(delivered_before=None, max_share=0.5, id_schema=INTEGER_ID)
    read = CompleteRead(Source(uncounted([[1, 2], [3]])), partition(), path(), rule)
    with caplog.at_level(logging.INFO, logger="test"):
        assert ids_of(read.records()) == [1, 2, 3]
    assert decoded(read.summary.delivered_ids) == {1, 2, 3}
    assert sum("no count" in m for m in caplog.messages) == 1


def test_a_count_that_is_no_number_is_no_count():
    rule = DeletionRule(delivered_before=delivered(1, 2, 3), max_share=1.0, id_schema=INTEGER_ID)
    pages = [
        Page({"count": True, "next": None, "results": [{"id": 1}]}, arrived_at=datetime.now(UTC))
    ]
    read = CompleteRead(Source(pages), partition(), path(), rule)
    records = list(read.records())
    assert all(DELETED_AT not in record for record in records)
    assert decoded(read.summary.delivered_ids) == {1, 2, 3}


def test_a_plain_list_is_checked_by_being_whole_and_deletes():
    # A plain JSON list is one answer, all of it: nothing to page, nothing left out.
    rule = DeletionRule(delivered_before=delivered(1, 2, 3), max_share=0.5, id_schema=INTEGER_ID)
    read = CompleteRead(Source([page([1, 2], None)]), partition(paginated=False), path(), rule)
    records = list(read.records())
    assert [r["id"] for r in records if DELETED_AT in r] == [3]


@pytest.mark.parametrize("count", [None, 1000])
def test_pages_that_bring_no_new_id_stop_the_read_at_once(count):
    # Every page serves the same rows and links to a page not asked for yet.
    source = Source([page([1, 2], count, next=f"?page={n + 2}") for n in range(100)])
    read = CompleteRead(source, partition(), path())
    emitted: list[Record] = []
    with pytest.raises(ApiError) as raised:
        emitted.extend(read.records())
    assert ids_of(emitted) == [1, 2]
    assert read.pages == 2
    assert source.calls == [False]
    message = str(raised.value)
    assert "\n" not in message
    assert message.startswith("assignment 7: page 2 served only rows already served")


def test_a_page_of_rows_already_served_while_the_count_changes_is_read_again():
    # Rows added ahead of page 2 pushed page 1's rows onto it: the list changed.
    first = [page([1, 2], 4, next="?page=2"), page([1, 2], 6, next="?page=3")]
    source = Source(first, listed([[3, 4], [1, 2], [5, 6]], count=6))
    read = CompleteRead(source, partition(), path())
    assert set(ids_of(read.records())) == {1, 2, 3, 4, 5, 6}
    assert source.calls == [False, True]


def test_endless_new_ids_without_a_count_stop_after_the_bound():
    def endless(again: bool = False) -> Iterator[Page]:
        n = 0
        while True:
            n += 1
            yield page([n], None, next=f"?page={n + 1}")

    read = CompleteRead(endless, partition(), path())
    emitted: list[Record] = []
    with pytest.raises(ApiError) as raised:
        emitted.extend(read.records())
    assert read.pages == MAX_PAGES_WITHOUT_COUNT + 1
    assert len(emitted) == MAX_PAGES_WITHOUT_COUNT
    message = str(raised.value)
    assert "\n" not in message
    assert message.startswith(f"assignment 7: the server sent {MAX_PAGES_WITHOUT_COUNT} pages")
    assert "without a count" in message
