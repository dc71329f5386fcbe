"""Writing Singer messages: msgspec encoding, flushed when it matters rather than per record."""

from __future__ import annotations

import atexit
import sys
import typing as t

from singer_sdk.contrib.msgspec import MsgSpecWriter
from singer_sdk.singerlib.encoding.base import SingerMessageType
from typing_extensions import override

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
        self._pending = bytearray()
        atexit.register(self.flush)

    @override
    def write_message(self, message: Message) -> None:
        self._pending += self.format_message(message)
        if message.type != SingerMessageType.RECORD or len(self._pending) >= _BUFFER_BYTES:
            self.flush()

    def flush(self) -> None:
        if self._pending:
            sys.stdout.buffer.write(self._pending)
            self._pending.clear()
        sys.stdout.flush()
