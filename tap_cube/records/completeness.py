"""Reading one partition completely: every record exactly once, or a loud failure.

DRF numbers pages over a list that may change while it is read: a removed row shifts
later rows onto pages already read, and they are never served. A read is complete only
when every page gave the same count and that many distinct records came back; otherwise
the list is read again from its first page, skipping records already emitted, up to
MAX_REREADS times, and then the run stops.

Every read ends: a page that brings no new record stops it, and so does a page beyond
the limits of tap_cube/api/paging.py (`PageTally`). A read without a count is taken as
served but cannot be checked, so it marks nothing deleted.
"""

from __future__ import annotations

import contextlib
import time
import typing as t
from dataclasses import dataclass
from datetime import UTC, datetime

import msgspec

from tap_cube.api.paging import PageTally
from tap_cube.errors import ApiError, IncompleteError, PageGoneError
from tap_cube.progress import Progress
from tap_cube.records.deletions import RemovedIds, delivered_so_far, encode_ids
from tap_cube.records.seen import SeenIds

if t.TYPE_CHECKING:
    import logging
    from collections.abc import Callable, Generator, Iterator

    from tap_cube.api.page import Page

#: Reads of a partition after the first, when its list changed while it was read.
MAX_REREADS = 3

Record = dict[str, t.Any]
#: A record as emitted, with when the page that brought it arrived (its time_extracted).
Extracted = tuple[Record, datetime]
#: What `CompleteRead.extracted` yields before each page: a moment for a STATE.
PAGE_BOUNDARY: t.Final = None

#: Seconds at least between two STATEs written while one partition is read.
CHECKPOINT_INTERVAL = 60.0
#: A STATE written while a partition is read costs at most this share of the read's
#: time: the next one waits at least this many times as long as the last one took.
CHECKPOINT_COST_FACTOR = 20


class Checkpoint:
    """When the next STATE of a partition being read is due: `interval` seconds after
    the read began or the last one, and at least CHECKPOINT_COST_FACTOR times as long
    as the last one took (a state of many ids takes long to encode and to load)."""

    def __init__(self, interval: float, clock: Callable[[], float] = time.monotonic) -> None:
        self._interval = interval
        self._clock = clock
        self._next = clock() + interval

    def due(self) -> bool:
        return self._clock() >= self._next

    @contextlib.contextmanager
    def timed(self) -> Iterator[None]:
        """Around the writing of a STATE: the next one is due once its wait is over."""
        started = self._clock()
        try:
            yield
        finally:
            ended = self._clock()
            self._next = ended + max(self._interval, CHECKPOINT_COST_FACTOR * (ended - started))


@dataclass(frozen=True, slots=True)
class PartitionList:
    """One partition's list, as a complete read needs to know it."""

    #: How messages name the stream and the partition: "customers", "assignment 7".
    stream_name: str
    where: str
    logger: logging.Logger
    #: The field that identifies a record within the partition (None: none does).
    id_field: str | None
    #: Whether the list comes in DRF pages with a `count` to check the read against.
    paginated: bool
    #: Seconds between two progress lines (tap_cube/progress.py).
    progress_interval: float
    #: The run's concurrency limit as it stands, for progress lines (None: not said).
    limit: Callable[[], int] | None = None


@dataclass(frozen=True, slots=True)
class RecordPath:
    """What becomes of a record served: how it is prepared, keyed and fitted."""

    #: Makes, for each read, the function that gives a record its key within the
    #: partition (None: the record lacks it). Fresh for each read: a key may depend on
    #: the records before, and a keyer may write what it derives into the record.
    keyer: Callable[[], Callable[[Record], object]]
    #: Called on each record as served, before it is keyed.
    prepare: Callable[[Record], None]
    #: The record as it is emitted.
    fit: Callable[[Record], Record]


@dataclass(frozen=True, slots=True)
class DeletionRule:
    """detect_deletions for one partition: what it delivered last time, and the limit.

    With `marks_deleted` off (detect_deletions off, on a partition that has delivered
    ids), nothing is marked deleted, and the ids kept are those delivered before with
    those emitted now: every row the target may hold live, for a later run with
    detect_deletions on to compare with.
    """

    #: The delivered ids its state holds (deletions.py); None before its first read.
    delivered_before: object
    #: The share of the rows it delivered that one run may mark deleted.
    max_share: float
    #: The id field's schema, for the deletion records.
    id_schema: dict[str, t.Any]
    #: Whether what is no longer served is marked deleted.
    marks_deleted: bool = True


@dataclass(slots=True)
class ReadSummary:
    """What a complete read did; the caller keeps what belongs in state."""

    pages: int = 0
    #: Records emitted, each once.
    delivered: int = 0
    #: Records served again (rows shifted between pages), not emitted again.
    duplicates: int = 0
    #: Whether the list changed while it was read, so it was read again.
    reread: bool = False
    deleted: int = 0
    #: The ids to keep as delivered (deletions.STATE_KEY); None: keep those there are.
    delivered_ids: dict[str, t.Any] | None = None
    #: Why deletions were withheld (more than max_share), for the stream to fail on.
    withheld: str | None = None
    #: Why the read could not be checked as complete (no count), if it could not.
    unchecked: str | None = None


class CompleteRead:
    """The reads of one partition until one is complete.

    It takes plain values and functions: a page source (called with `again=True` for a
    fresh pass from the first page), what the partition's list is, the record path and,
    with detect_deletions, the deletion rule. It yields the records, each exactly once,
    then any deletion records, and leaves in `summary` what happened, or it fails.
    """

    def __init__(
        self,
        pages: Callable[..., Iterator[Page]],
        partition: PartitionList,
        path: RecordPath,
        deletions: DeletionRule | None = None,
    ) -> None:
        self._pages = pages
        self._partition = partition
        self._path = path
        self._rule = deletions
        self.summary = ReadSummary()
        #: The ids emitted so far, while the records are read.
        self._emitted: SeenIds | None = None
        #: Why a `next` link of this partition was not followed, from the first one seen.
        self._unusable_link: str | None = None
        #: Why the last read cannot be checked against a count (None: it was checked).
        self._unchecked: str | None = None
        #: When the page read last arrived.
        self._arrived_at = datetime.now(UTC)

    @property
    def pages(self) -> int:
        """Every page read so far, over all reads."""
        return self.summary.pages

    def records(self) -> Iterator[Record]:
        """The records of the partition, each exactly once, or an error that says why not."""
        for item in self.extracted():
            if item is not None:  # PAGE_BOUNDARY
                yield item[0]

    def extracted(self) -> Iterator[Extracted | None]:
        """`records`, each with when its page arrived, and PAGE_BOUNDARY before each page:
        there every record of the pages before has gone out."""
        with SeenIds() as emitted:
            self._emitted = emitted
            try:
                yield from self._reads(emitted)
            except BaseException:
                self._keep_what_was_sent()
                raise
            finally:
                self._emitted = None
        if self.summary.duplicates:
            self._partition.logger.warning(
                "%s: %d records were served twice (rows shifted between pages); each was "
                "emitted once",
                self._partition.where,
                self.summary.duplicates,
            )

    def sent_so_far(self) -> dict[str, str] | None:
        """The ids delivered before and those emitted so far, for a STATE written while
        the partition is read or when its read ends early; None without deletions or
        before any record was emitted.

        Without them, a record sent now whose row is gone by the next complete read
        would never be marked deleted: the target keeps it, and no state names it.
        """
        emitted = self._emitted
        if self._rule is None or emitted is None or not len(emitted):
            return None
        return delivered_so_far(self._rule.delivered_before, emitted)

    def _keep_what_was_sent(self) -> None:
        """For a read that ends early (an error, a signal): `sent_so_far`, for the stream
        to write to the state before the run ends."""
        try:
            sent = self.sent_so_far()
            if sent is not None:
                self.summary.delivered_ids = sent
        except Exception:  # the error that ended the read is the one to report
            self._partition.logger.warning(
                "%s: the ids sent before the run ended could not be kept", self._partition.where
            )

    def _reads(self, emitted: SeenIds) -> Iterator[Extracted | None]:
        """Reads until one is complete, then the deletion records."""
        partition, summary = self._partition, self.summary
        with contextlib.ExitStack() as reads:
            for attempt in range(MAX_REREADS + 1):
                # The first read checks ids against what was emitted; later ones also
                # need to know what they served, since most of it was emitted before.
                served = emitted if attempt == 0 else reads.enter_context(SeenIds())
                summary.reread = attempt > 0
                problem = yield from self._read_once(emitted, served, again=attempt > 0)
                if problem is None:
                    break
                if attempt < MAX_REREADS:
                    partition.logger.warning(
                        "%s: the list changed while it was read (this read %s); reading it "
                        "again from page 1, skipping the %d records already emitted",
                        partition.where,
                        problem,
                        summary.delivered,
                    )
            else:
                reads_note = f"read {MAX_REREADS + 1} times, the last read {problem}"
                if self._unusable_link is None:
                    why = f"the list kept changing while it was read; {reads_note}"
                else:
                    why = (
                        "the server's next links are unusable and reading on by page "
                        f"number did not add up either; {reads_note}"
                    )
                msg = (
                    f"{partition.where}: {why}. Records may be missing, so the run stops "
                    "rather than load an incomplete list: run it again later, and report "
                    "it to Headshed if it persists."
                )
                raise IncompleteError(msg)
            summary.unchecked = self._unchecked
            if self._rule is None:
                return
            if not self._rule.marks_deleted:
                # detect_deletions off: the ids kept current, for a later run with it on.
                self.summary.delivered_ids = delivered_so_far(self._rule.delivered_before, emitted)
                return
            if self._unchecked is not None:
                self._keep_unchecked(self._rule, emitted, self._unchecked)
                return
            yield from self._deletions(self._rule, served, emitted)

    def _keep_unchecked(self, rule: DeletionRule, emitted: SeenIds, why: str) -> None:
        """For a read that cannot be checked as complete: no deletions, and every id
        delivered so far is kept, so that a later checked read deletes what is gone.

        Without a count, links that end early look like a complete list: the rows they
        leave out would be marked deleted while they are live.
        """
        partition = self._partition
        self.summary.delivered_ids = delivered_so_far(rule.delivered_before, emitted)
        partition.logger.warning(
            "%s: %s: %s, so this read cannot be checked as complete; nothing is marked "
            "deleted there this run (its ids are kept for a later read with a count)",
            partition.stream_name,
            partition.where,
            why,
        )

    def _deletions(
        self, rule: DeletionRule, served: SeenIds, emitted: SeenIds
    ) -> Iterator[Extracted]:
        """Deletion records for what this complete read no longer served (deletions.py).

        A partition that would lose more than max_share of the rows it delivered
        deletes nothing: one empty or short answer from a server in trouble must not
        wipe a copy. It keeps every id delivered so far, and says why in the summary.
        """
        partition, summary = self._partition, self.summary
        removed = RemovedIds(rule.delivered_before, served, emitted)
        if removed and len(removed) > rule.max_share * removed.delivered:
            summary.delivered_ids = removed.delivered_ids()
            empty = " (the list came back empty)" if not len(served) else ""
            summary.withheld = (
                f"{partition.where}: {len(removed)} of the {removed.delivered} rows it "
                f"delivered before would be marked deleted{empty}"
            )
            partition.logger.warning(
                "%s, more than max_deletion_share (%s) allows; nothing is marked deleted "
                "there and its rows stay live",
                summary.withheld,
                rule.max_share,
            )
            return
        # Found missing by the read that ended with the last page.
        for record in removed.records(str(partition.id_field), rule.id_schema):
            yield record, self._arrived_at
        summary.deleted = len(removed)
        summary.delivered_ids = encode_ids(served.small_numbers, served.other_ids())
        if removed:
            partition.logger.info(
                "%s: %d records are no longer served; marked deleted",
                partition.where,
                len(removed),
            )

    def _read_once(
        self, emitted: SeenIds, served: SeenIds, *, again: bool
    ) -> Generator[Extracted | None, None, str | None]:
        """One read of the partition from its first page; returns why it was incomplete.

        `served` collects the ids this read served; on the first read it is `emitted`.
        """
        partition = self._partition
        tally = PageTally(partition.where)
        # Counted here, where the partition's pages are emitted in order: pages fetched
        # ahead (of this partition or the next ones) are not read until they get here.
        progress = Progress(
            partition.logger,
            f"{partition.stream_name}: {partition.where}",
            interval=partition.progress_interval,
            limit=partition.limit,
        )
        read = _OneRead(partition, self._path.keyer(), emitted, served)
        self._unchecked = None
        try:
            for page in self._pages(again=again):
                yield PAGE_BOUNDARY
                self._arrived_at = page.arrived_at
                self.summary.pages += 1
                tally.take(page)
                self._note_unusable_link(page, tally.pages)
                if not page.records and page.next:
                    return f"got an empty page {tally.pages} that links to a next one"
                before = read.distinct
                yield from self._page_records(page, read)
                if read.distinct == before and page.records and page.next:
                    # Rows added ahead can push a whole page back, but then its count
                    # changed; a server that repeats itself would be paged forever.
                    if tally.changed_to is not None:
                        return f"saw the count change from {tally.count} to {tally.changed_to}"
                    by_number = self._unusable_link is not None
                    raise tally.repeated_page(len(page.records), by_number=by_number)
                progress.update(tally.pages, read.distinct, tally.count, tally.page_size)
        except PageGoneError:
            return f"ended at page {tally.pages + 1}, which the server no longer has (404)"
        finally:
            read.forms.close()
        return self._incomplete(tally, read.distinct)

    def _page_records(self, page: Page, read: _OneRead) -> Iterator[Extracted]:
        """The records of `page` that are new to the partition, fitted; counts the rest."""
        path, summary, field, where = self._path, self.summary, read.field, read.where
        arrived_at = page.arrived_at
        record_id, served, emitted, forms = read.record_id, read.served, read.emitted, read.forms
        for record in page.records:
            path.prepare(record)
            key = record_id(record)
            if key is None:
                msg = (
                    f"{where}: the server sent a record without {field or 'its key'}; it "
                    "cannot be keyed, so the run stops. Report it to Headshed."
                )
                raise ApiError(msg)
            # The key is the id as sent unless fitting it to its column changed it.
            reformed = field is not None and key is not record.get(field)
            if not served.add(key):
                forms.check_repeat(key, reformed, record, where)
                summary.duplicates += 1
                continue
            if reformed:
                forms.add(key)
            read.distinct += 1
            if served is not emitted and not emitted.add(key):
                continue
            summary.delivered += 1
            yield path.fit(record), arrived_at

    def _note_unusable_link(self, page: Page, number: int) -> None:
        """Warns once per partition that its links are unusable, from the first such page."""
        if not page.unusable_link or self._unusable_link is not None:
            return
        self._unusable_link = page.unusable_link
        self._partition.logger.warning(
            "%s: %s: the server's next links are unusable (page %d's link %s); reading on "
            "by page number on the list's own path and query, checked against its count",
            self._partition.stream_name,
            self._partition.where,
            number,
            page.unusable_link,
        )

    def _incomplete(self, tally: PageTally, distinct: int) -> str | None:
        """Why a read that reached its last page is incomplete (None: it is complete)."""
        if not self._partition.paginated:
            return None  # a plain list is one answer, whole
        if tally.count is None:
            self._unchecked = "its pages carry no count"
            return None
        if tally.changed_to is not None:
            return f"saw the count change from {tally.count} to {tally.changed_to}"
        if distinct != tally.count:
            return f"served {distinct} of the {tally.count} records its count announced"
        return None


class _OneRead:
    """What one read of a partition keeps while it goes: how records are keyed, the ids
    it served and emitted, and how many distinct records it served."""

    def __init__(
        self,
        partition: PartitionList,
        record_id: Callable[[Record], object],
        emitted: SeenIds,
        served: SeenIds,
    ) -> None:
        self.where = partition.where
        self.field = partition.id_field
        self.record_id = record_id
        self.emitted = emitted
        self.served = served
        self.forms = IdForms(partition.id_field)
        self.distinct = 0


class IdForms:
    """The ids of one read whose key is not the id as sent (the text "5" for a 5).

    A page shift repeats a row as the server rendered it before; an id repeated in
    another form is another record, which the target would store in the same row.
    """

    def __init__(self, field: str | None) -> None:
        self._field = str(field)
        self._reformed = SeenIds()

    def add(self, key: object) -> None:
        """Remember that `key`, seen for the first time in this read, was sent otherwise."""
        self._reformed.add(key)

    def check_repeat(
        self, key: object, reformed: bool, record: dict[str, t.Any], where: str
    ) -> None:
        """Stop the run when a repeated id came in another form than the first time."""
        if reformed == (key in self._reformed):
            return
        sent = msgspec.json.encode(record.get(self._field)).decode()
        msg = (
            f"{where}: the server lists {self._field} {sent} and another record whose "
            f"{self._field} is also {msgspec.json.encode(key).decode()} once fitted to its "
            "column; the target would keep one row for both, so the run stops rather than "
            "lose one. Report it to Headshed."
        )
        raise ApiError(msg)

    def close(self) -> None:
        self._reformed.close()
