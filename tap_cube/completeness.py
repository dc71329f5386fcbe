"""Reading one partition completely: every record exactly once, or a loud failure.

DRF numbers pages over a list that may change while it is read: a removed row shifts
later rows onto pages already read, and they are never served. A read is complete only
when every page gave the same count and that many distinct records came back; otherwise
the list is read again from its first page, skipping records already emitted, up to
MAX_REREADS times, and then the run stops.
"""

from __future__ import annotations

import contextlib
import math
import time
import typing as t
from array import array
from datetime import UTC, datetime

import msgspec

from tap_cube import changes
from tap_cube.client import Endpoint
from tap_cube.deletions import STATE_KEY, RemovedIds, encode_ids
from tap_cube.errors import ApiError, IncompleteError
from tap_cube.fetch import PageGoneError
from tap_cube.pagination import page_body
from tap_cube.progress import Progress
from tap_cube.seen import SeenIds

if t.TYPE_CHECKING:
    from collections.abc import Callable, Generator, Iterator

    from singer_sdk.helpers.types import Context

    from tap_cube.client import CubeClient
    from tap_cube.fetch import PagePipeline

#: Reads of a partition after the first, when its list changed while it was read.
MAX_REREADS = 3


class PartitionSource(Endpoint, t.Protocol):
    """What a complete read needs of its stream, beyond what its client needs."""

    #: When the page whose records are being emitted arrived.
    page_extracted_at: datetime
    #: Why deletions were withheld in partitions read so far (see `_deletions`).
    withheld_deletions: list[str]

    @property
    def record_id_field(self) -> str | None: ...
    @property
    def pipeline(self) -> PagePipeline: ...
    @property
    def client(self) -> CubeClient: ...
    @property
    def detects_deletions(self) -> bool: ...
    @property
    def progress_interval(self) -> float: ...
    @property
    def max_deletion_share(self) -> float: ...
    @property
    def skips_unchanged(self) -> bool: ...
    @property
    def tracks_changes(self) -> bool: ...
    @property
    def schema(self) -> dict[str, t.Any]: ...

    def record_identity(self) -> Callable[[dict[str, t.Any]], object]: ...

    def coerce(self, record: dict[str, t.Any]) -> dict[str, t.Any]: ...

    def set_aside_owned(self, record: dict[str, t.Any], context: Context | None) -> None: ...

    def get_context_state(self, context: Context | None) -> dict[str, t.Any]: ...

    def filter_changes(self, changes: changes.ChangeFilter | None) -> None: ...


class CompleteRead:
    """The reads of one partition until one is complete; `pages` counts every page."""

    def __init__(self, stream: PartitionSource, context: Context | None) -> None:
        self._stream = stream
        self._context = context
        self._where = stream.describe_partition(context)
        self.pages = 0
        self._delivered = 0
        self._duplicates = 0
        #: Why a `next` link of this partition was not followed, from the first one seen.
        self._unusable_link: str | None = None
        self._deleted = 0

    def records(self) -> Iterator[dict[str, t.Any]]:
        """The records of the partition, each exactly once, or an error that says why not."""
        stream, context, where = self._stream, self._context, self._where
        started = time.monotonic()
        change_filter = (
            self._change_filter(stream.get_context_state(context))
            if stream.skips_unchanged
            else None
        )
        stream.filter_changes(change_filter)
        with contextlib.ExitStack() as ids:
            ids.callback(stream.filter_changes, None)
            emitted = ids.enter_context(SeenIds())
            for attempt in range(MAX_REREADS + 1):
                # The first read checks ids against what was emitted; later ones also
                # need to know what they served, since most of it was emitted before.
                served = emitted if attempt == 0 else ids.enter_context(SeenIds())
                if attempt:
                    stream.pipeline.read_again(context or {})
                problem = yield from self._read_once(emitted, served)
                if problem is None:
                    break
                if attempt < MAX_REREADS:
                    stream.logger.warning(
                        "%s: the list changed while it was read (this read %s); reading it "
                        "again from page 1, skipping the %d records already emitted",
                        where,
                        problem,
                        self._delivered,
                    )
            else:
                reads = f"read {MAX_REREADS + 1} times, the last read {problem}"
                if self._unusable_link is None:
                    why = f"the list kept changing while it was read; {reads}"
                else:
                    why = (
                        "the server's next links are unusable and reading on by page "
                        f"number did not add up either; {reads}"
                    )
                msg = (
                    f"{where}: {why}. Records may be missing, so the run stops rather than "
                    "load an incomplete list: run it again later, and report it to Headshed "
                    "if it persists."
                )
                raise IncompleteError(msg)
            if stream.detects_deletions:
                yield from self._deletions(served, emitted)
            if change_filter is not None:
                # After a read again, some records sent may since have been deleted; their
                # hashes must not make them look unchanged when they come back, so the
                # next run compares with nothing and sends the partition whole.
                kept = change_filter.finish() if attempt == 0 else array("Q")
                state = stream.get_context_state(context)
                state[changes.STATE_KEY] = changes.encode_hashes(kept)
            elif stream.tracks_changes:
                # Hashes from before a run without skip_unchanged may vouch for rows it
                # has since marked deleted.
                stream.get_context_state(context).pop(changes.STATE_KEY, None)
        if self._duplicates:
            stream.logger.warning(
                "%s: %d records were served twice (rows shifted between pages); each was "
                "emitted once",
                where,
                self._duplicates,
            )
        unchanged = change_filter.unchanged if change_filter is not None else 0
        stream.logger.info(
            "%s: %s done: %d records, %d pages, %d retries, %.1f s; "
            "%d emitted, %d unchanged (skipped), %d deleted",
            stream.name,
            where,
            self._delivered,
            self.pages,
            stream.client.retries_of(context),
            time.monotonic() - started,
            self._delivered - unchanged,
            unchanged,
            self._deleted,
        )

    def _change_filter(self, state: dict[str, t.Any]) -> changes.ChangeFilter:
        """skip_unchanged's filter, comparing with the hashes of the last complete read
        (checked with the rest of the state before the run: tap_cube/state.py)."""
        stored = state.get(changes.STATE_KEY)
        previous = changes.decode_hashes(stored) if stored else array("Q")
        return changes.ChangeFilter(previous)

    def _deletions(self, served: SeenIds, emitted: SeenIds) -> Iterator[dict[str, t.Any]]:
        """Deletion records for what this complete read no longer served (deletions.py).

        A partition that would lose more than max_deletion_share of the rows it
        delivered deletes nothing: one empty or short answer from a server in trouble
        must not wipe a copy. It keeps every id delivered so far, and the stream fails
        once its other partitions are read (CubeStream.get_records).
        """
        stream, where = self._stream, self._where
        field = str(stream.record_id_field)
        state = stream.get_context_state(self._context)
        removed = RemovedIds(state.get(STATE_KEY), served, emitted)
        share = stream.max_deletion_share
        if removed and len(removed) > share * removed.delivered:
            state[STATE_KEY] = removed.delivered_ids()
            empty = " (the list came back empty)" if not len(served) else ""
            withheld = (
                f"{where}: {len(removed)} of the {removed.delivered} rows it delivered "
                f"before would be marked deleted{empty}"
            )
            stream.logger.warning(
                "%s, more than max_deletion_share (%s) allows; nothing is marked deleted "
                "there and its rows stay live",
                withheld,
                share,
            )
            stream.withheld_deletions.append(withheld)
            return
        yield from removed.records(field, stream.schema["properties"][field])
        self._deleted = len(removed)
        state[STATE_KEY] = encode_ids(served.small_numbers, served.other_ids())
        if removed:
            stream.logger.info(
                "%s: %d records are no longer served; marked deleted", where, len(removed)
            )

    def _read_once(
        self, emitted: SeenIds, served: SeenIds
    ) -> Generator[dict[str, t.Any], None, str | None]:
        """One read of the partition from its first page; returns why it was incomplete.

        `served` collects the ids this read served; on the first read it is `emitted`.
        """
        stream, where = self._stream, self._where
        record_id = stream.record_identity()
        # Counted here, where the partition's pages are emitted in order: pages fetched
        # ahead (of this partition or the next ones) are not read until they get here.
        progress = Progress(
            stream.logger, f"{stream.name}: {where}", interval=stream.progress_interval
        )
        field = stream.record_id_field
        forms = IdForms(field)
        count: int | None = None
        changed_to: int | None = None
        distinct = pages = 0
        page_limit = page_size = 0
        try:
            for page in stream.pipeline.pages(self._context or {}):
                # The records of a page were extracted together, when it arrived.
                stream.page_extracted_at = datetime.now(UTC)
                pages += 1
                self.pages += 1
                if pages == 1:
                    count = page.count
                    page_size = len(page.records)
                    if count is not None and page_size:
                        # Slack for rows added while reading; a loop exceeds it.
                        page_limit = 2 * math.ceil(count / page_size) + 2
                elif page.count != count and changed_to is None:
                    changed_to = page.count
                if page_limit and pages > page_limit:
                    msg = (
                        f"{where}: the server sent more pages than its count of {count} "
                        f"allows ({pages} pages of up to {page_size} rows); stopping "
                        "instead of paging forever. Report it to Headshed."
                    )
                    raise ApiError(msg)
                if page.unusable_link and self._unusable_link is None:
                    self._unusable_link = page.unusable_link
                    stream.logger.warning(
                        "%s: %s: the server's next links are unusable (page %d's link %s); "
                        "reading on by page number on the list's own path and query, "
                        "checked against its count",
                        stream.name,
                        where,
                        pages,
                        page.unusable_link,
                    )
                if not page.records and page_body(page.response).get("next"):
                    return f"got an empty page {pages} that links to a next one"
                for record in page.records:
                    stream.set_aside_owned(record, self._context)
                    key = record_id(record)
                    if key is None:
                        msg = (
                            f"{where}: the server sent a record without "
                            f"{stream.record_id_field or 'its key'}; it cannot be keyed, so "
                            "the run stops. Report it to Headshed."
                        )
                        raise ApiError(msg)
                    # The key is the id as sent unless fitting it to its column changed it.
                    reformed = field is not None and key is not record.get(field)
                    if not served.add(key):
                        forms.check_repeat(key, reformed, record, where)
                        self._duplicates += 1
                        continue
                    if reformed:
                        forms.add(key)
                    distinct += 1
                    if served is not emitted and not emitted.add(key):
                        continue
                    self._delivered += 1
                    yield stream.coerce(record)
                progress.update(pages, distinct, count, page_size)
        except PageGoneError:
            return f"ended at page {pages + 1}, which the server no longer has (404)"
        finally:
            forms.close()
        if not stream.paginated or count is None:
            return None
        if changed_to is not None:
            return f"saw the count change from {count} to {changed_to}"
        if distinct != count:
            return f"served {distinct} of the {count} records its count announced"
        return None


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
