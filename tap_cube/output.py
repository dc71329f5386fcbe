"""Writing Singer messages: msgspec encoding, flushed when it matters rather than per record."""

from __future__ import annotations

import atexit
import os
import sys
import typing as t

from singer_sdk.contrib.msgspec import MsgSpecWriter
from singer_sdk.singerlib.encoding.base import SingerMessageType
from typing_extensions import override

from tap_cube.errors import OutputClosedError, Stopped

if t.TYPE_CHECKING:
    from singer_sdk.singerlib.encoding.simple import Message

_BUFFER_BYTES = 1 << 16


class BufferedRecordWriter(MsgSpecWriter):
    """Records are written in blocks of about 64 KiB; every other message flushes them.

    A write and a flush per record cost two system calls each (stdout is unbuffered
    under PYTHONUNBUFFERED, which Meltano and many schedulers set). Flushing at each
    STATE, SCHEMA or ACTIVATE_VERSION message keeps the guarantee that matters: a target
    never sees a state before the records it covers. Whatever is left is written at exit.
    """

    def __init__(self) -> None:
        super().__init__()
        #: RECORD messages written, for the last line of a stopped run.
        self.records_written = 0
        self._pending = bytearray()
        self._closed = False
        self._writing = False
        self._stop_signal: int | None = None
        atexit.register(self.flush)

    def stop(self, signum: int) -> None:
        """Stop the run for a signal, but never in the middle of a message.

        A signal handler that raises while stdout is being written aborts the write
        part-way, and the target would read half a record.
        """
        if self._writing:
            self._stop_signal = signum  # raised once the write is complete
            return
        raise Stopped(signum, self.records_written)

    @override
    def write_message(self, message: Message) -> None:
        line = self.format_message(message)
        if message.type == SingerMessageType.RECORD:
            self._pending += line
            self.records_written += 1
            if len(self._pending) < _BUFFER_BYTES:
                return
            self.flush()
            return
        self.flush()
        # Written from the encoder's buffer, not copied behind the records first: a STATE
        # with a million record hashes (skip_unchanged) is megabytes.
        self._write(line)

    def flush(self) -> None:
        self._write(self._pending)

    def _write(self, data: bytearray) -> None:
        """Write `data` whole, then empty it."""
        if self._closed:
            return
        self._writing = True
        try:
            write_output(data)
        except OutputClosedError:
            self._closed = True
            self._pending.clear()
            raise
        finally:
            data.clear()
            self._writing = False
        if self._stop_signal is not None:
            signum, self._stop_signal = self._stop_signal, None
            raise Stopped(signum, self.records_written)


def write_output(data: bytes | bytearray) -> None:
    """Write `data` to stdout whole, or fail with one line when stdout cannot take it."""
    try:
        # A write interrupted by a signal may write less than it was given.
        with memoryview(data) as whole:
            written = 0
            while written < len(whole):
                with whole[written:] as rest:  # released, so `data` may be cleared
                    written += sys.stdout.buffer.write(rest)
        sys.stdout.flush()
    except OSError as exc:
        # Python's own flush at exit would fail on the same file with a traceback.
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        os.close(devnull)
        if isinstance(exc, BrokenPipeError):
            msg = (
                "the output was closed before the run ended (the target or the next "
                "command stopped reading); this run is incomplete"
            )
        else:
            msg = f"writing the output failed ({exc.strerror}); this run is incomplete"
        raise OutputClosedError(msg) from None
