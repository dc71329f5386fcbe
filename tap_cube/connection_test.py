"""`--test`: every stream reads its first record, and one line per stream says so.

The SDK stops each stream after one record by raising an abort, which its sync logs at
ERROR although nothing is wrong. Here that one line is held back while a stream is
checked, and given to the log after all when the stream failed for another reason.
"""

from __future__ import annotations

import contextlib
import logging
import typing as t

from singer_sdk.exceptions import (
    AbortedSyncFailedException,
    AbortedSyncPausedException,
    MaxRecordsLimitException,
)
from typing_extensions import override

if t.TYPE_CHECKING:
    from collections.abc import Iterable, Iterator

    from singer_sdk.streams import Stream

#: What the SDK's `Stream.sync` logs at ERROR for any exception, the test's abort included.
SYNC_ERROR = "An unhandled error occurred while syncing '%s'"


def check_streams(streams: Iterable[Stream], logger: logging.Logger) -> None:
    """Read one record of each stream (as the SDK's test does) and log what each found."""
    streams = list(streams)
    for stream in streams:
        stream.ABORT_AT_RECORD_COUNT = 1
        stream.selected = True
    for stream in streams:
        if stream.parent_stream_type is None:  # a child is read by its parent
            logger.info("Connection test: stream %s %s", stream.name, _check(stream))


def _check(stream: Stream) -> str:
    """What reading the stream's first record found; a real failure is raised."""
    try:
        with _held_sync_error(stream.logger) as held:
            stream.sync()
    except (AbortedSyncFailedException, AbortedSyncPausedException) as exc:
        if isinstance(exc.__cause__, MaxRecordsLimitException):
            return "OK: read its first record"
        held.release(stream.logger)
        raise
    except BaseException:
        held.release(stream.logger)
        raise
    return "OK: no records to read"


class _HeldSyncError(logging.Filter):
    """Keeps the SDK's sync-error line back until it is known to be an error."""

    def __init__(self) -> None:
        super().__init__()
        self.held: list[logging.LogRecord] = []

    @override
    def filter(self, record: logging.LogRecord) -> bool:
        if record.levelno == logging.ERROR and record.msg == SYNC_ERROR:
            self.held.append(record)
            return False
        return True

    def release(self, logger: logging.Logger) -> None:
        for record in self.held:
            logger.handle(record)


@contextlib.contextmanager
def _held_sync_error(logger: logging.Logger) -> Iterator[_HeldSyncError]:
    held = _HeldSyncError()
    logger.addFilter(held)
    try:
        yield held
    finally:
        logger.removeFilter(held)
