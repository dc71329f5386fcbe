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
from datetime import UTC, datetime

from tap_cube.client import Endpoint
from tap_cube.deletions import deletion_records
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
    def schema(self) -> dict[str, t.Any]: ...

    def record_identity(self) -> Callable[[dict[str, t.Any]], object]: ...

    def coerce(self, record: dict[str, t.Any]) -> dict[str, t.Any]: ...

    def set_aside_owned(self, record: dict[str, t.Any], context: Context | None) -> None: ...

    def get_context_state(self, context: Context | None) -> dict[str, t.Any]: ...


class CompleteRead:
    """The reads of one partition until one is complete; `pages` counts every page."""

    def __init__(self, stream: PartitionSource, context: Context | None) -> None:
        self._stream = stream
        self._context = context
        self._where = stream.describe_partition(context)
        self.pages = 0
        self._delivered = 0
        self._duplicates = 0

    def records(self) -> Iterator[dict[str, t.Any]]:
        """The records of the partition, each exactly once, or an error that says why not."""
        stream, context, where = self._stream, self._context, self._where
        started = time.monotonic()
        with contextlib.ExitStack() as ids:
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
                msg = (
                    f"{where}: the list kept changing while it was read; read "
                    f"{MAX_REREADS + 1} times, the last read {problem}. Records may be "
                    "missing, so the run stops rather than load an incomplete list: run it "
                    "again later, and report it to Headshed if it persists."
                )
                raise IncompleteError(msg)
            if stream.detects_deletions:
                yield from self._deletions(served, emitted)
        if self._duplicates:
            stream.logger.warning(
                "%s: %d records were served twice (rows shifted between pages); each was "
                "emitted once",
                where,
                self._duplicates,
            )
        stream.logger.info(
            "%s: %s done: %d records, %d pages, %d retries, %.1f s",
            stream.name,
            where,
            self._delivered,
            self.pages,
            stream.client.retries_of(context),
            time.monotonic() - started,
        )

    def _deletions(self, served: SeenIds, emitted: SeenIds) -> Iterator[dict[str, t.Any]]:
        """Deletion records for what this complete read no longer served (deletions.py)."""
        stream = self._stream
        field = str(stream.record_id_field)
        state = stream.get_context_state(self._context)
        deleted = 0
        for record in deletion_records(
            state, served, emitted, field, stream.schema["properties"][field]
        ):
            deleted += 1
            yield record
        if deleted:
            stream.logger.info(
                "%s: %d records are no longer served; marked deleted", self._where, deleted
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
                    if not served.add(key):
                        self._duplicates += 1
                        continue
                    distinct += 1
                    if served is not emitted and not emitted.add(key):
                        continue
                    self._delivered += 1
                    yield stream.coerce(record)
                progress.update(pages, distinct, count, page_size)
        except PageGoneError:
            return f"ended at page {pages + 1}, which no longer exists (404 Invalid page.)"
        if not stream.paginated or count is None:
            return None
        if changed_to is not None:
            return f"saw the count change from {count} to {changed_to}"
        if distinct != count:
            return f"served {distinct} of the {count} records its count announced"
        return None
