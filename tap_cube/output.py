"""Writing Singer messages: msgspec encoding, flushed when it matters rather than per record."""

from __future__ import annotations

import atexit
import os
import sys
import typing as t

import xxhash
from singer_sdk.contrib.msgspec import MsgSpecWriter
from singer_sdk.contrib.msgspec import encoder as SDK_ENCODER
from singer_sdk.helpers._state import StateWriter
from singer_sdk.singerlib import RecordMessage, StateMessage
from typing_extensions import override

from tap_cube.errors import OutputClosedError, Stopped

if t.TYPE_CHECKING:
    from collections.abc import Iterable, Iterator

    from singer_sdk.helpers import types
    from singer_sdk.singerlib.encoding.base import GenericSingerWriter
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
        if type(message) is RecordMessage:
            # Encoded straight onto the block, as the SDK's writer encodes it: its
            # format_message makes a line first, and copying that costs a third as much.
            pending = self._pending
            SDK_ENCODER.encode_into(message.to_dict(), pending, -1)
            pending += b"\n"
            self.records_written += 1
            if len(pending) >= _BUFFER_BYTES:
                self.flush()
            return
        self.flush()
        if isinstance(message, StateMessage):
            # A STATE with a million record hashes (skip_unchanged) is megabytes: it is
            # encoded and written a slice at a time, never whole in memory.
            self._write_pieces(_json_pieces({"type": "STATE", "value": message.value}), b"\n")
            return
        self._write(self.format_message(message))

    def flush(self) -> None:
        self._write(self._pending)

    def _write(self, data: bytearray) -> None:
        """Write `data` whole, then empty it."""
        try:
            self._write_pieces((data,))
        finally:
            data.clear()

    def _write_pieces(self, pieces: Iterable[bytes | bytearray], end: bytes = b"") -> None:
        """Write the pieces of one or more whole messages, in blocks of about 64 KiB."""
        if self._closed:
            return
        self._writing = True
        block = bytearray()
        try:
            for piece in pieces:
                if len(block) + len(piece) > _BUFFER_BYTES:
                    write_output(block)
                    block.clear()
                if len(piece) >= _BUFFER_BYTES:
                    write_output(piece)  # from where it is, not copied first
                else:
                    block += piece
            block += end
            write_output(block)
        except OutputClosedError:
            self._closed = True
            self._pending.clear()
            raise
        finally:
            self._writing = False
        if self._stop_signal is not None:
            signum, self._stop_signal = self._stop_signal, None
            raise Stopped(signum, self.records_written)


#: The SDK writer's own encoder: a line here is byte for byte what it writes.
_encode = SDK_ENCODER.encode
#: Characters of a long string encoded at a time.
_SLICE = 1 << 16


def _json_pieces(value: object, *, sort_keys: bool = False) -> Iterator[bytes]:
    """`value` as JSON, the way the SDK's msgspec writer encodes it, in pieces: a long
    string (record hashes) a slice at a time."""
    if isinstance(value, dict):
        yield b"{"
        keys = sorted(value, key=str) if sort_keys else value
        for index, key in enumerate(keys):
            yield b"," if index else b""
            yield _encode(key if isinstance(key, str) else str(key))
            yield b":"
            yield from _json_pieces(value[key], sort_keys=sort_keys)
        yield b"}"
    elif isinstance(value, list | tuple):
        yield b"["
        for index, item in enumerate(value):
            yield b"," if index else b""
            yield from _json_pieces(item, sort_keys=sort_keys)
        yield b"]"
    elif isinstance(value, str) and len(value) > _SLICE:
        yield b'"'
        for start in range(0, len(value), _SLICE):
            yield _encode(value[start : start + _SLICE])[1:-1]  # escaped, without quotes
        yield b'"'
    else:
        yield _encode(value)


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


class DigestStateWriter(StateWriter):
    """The SDK's StateWriter, remembering the last STATE by a digest instead of a copy.

    It skips a STATE equal to the last one written; the SDK's own keeps a deep copy to
    compare with, which holds the run's first STATE, its input, until the next one: with
    skip_unchanged that is every partition's old record hashes (megabytes) for as long
    as a stream reads. A 128-bit digest of the state tells the same.
    """

    def __init__(self, message_writer: GenericSingerWriter[t.Any, t.Any]) -> None:
        super().__init__(message_writer)
        self._last_digest: bytes | None = None

    @override
    def write_state(self, state: types.TapState) -> None:
        digest = state_digest(state)
        if digest == self._last_digest:
            return
        self._message_writer.write_message(StateMessage(value=state))
        self._last_digest = digest


def state_digest(state: object) -> bytes:
    """A 128-bit digest of the STATE line `state` makes (keys sorted, so that equal
    states digest alike), fed a piece at a time as it is written."""
    hasher = xxhash.xxh3_128()
    for piece in _json_pieces(state, sort_keys=True):
        hasher.update(piece)
    return hasher.digest()
