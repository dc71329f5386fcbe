"""Remembering which ids a partition has delivered, in little memory."""

from __future__ import annotations

_CHUNK_BITS = 15  # 32,768 ids per chunk: a 4 KiB bitmap


class SeenIds:
    """A set of record ids, compact for the numeric ids Cube uses.

    A Python set of a million id strings costs about 80 MB, which would make memory grow
    with the size of an assignment. Canonical decimal ids (no sign, no leading zero) are
    kept as bits in 4 KiB chunks instead; any other id falls back to a plain set.
    """

    __slots__ = ("_chunks", "_others")

    def __init__(self) -> None:
        self._chunks: dict[int, bytearray] = {}
        self._others: set[object] = set()

    def add(self, record_id: object) -> bool:
        """Remember `record_id`; False when it was already there (or is None, no id)."""
        if (
            type(record_id) is str
            and record_id.isascii()
            and record_id.isdigit()
            and record_id[0] != "0"
        ):
            number = int(record_id)
        elif type(record_id) is int and record_id > 0:
            number = record_id
        else:
            if record_id is None or record_id in self._others:
                return False
            self._others.add(record_id)
            return True
        chunk = self._chunks.get(number >> _CHUNK_BITS)
        if chunk is None:
            chunk = self._chunks[number >> _CHUNK_BITS] = bytearray(1 << (_CHUNK_BITS - 3))
        offset = number & ((1 << _CHUNK_BITS) - 1)
        mask = 1 << (offset & 7)
        if chunk[offset >> 3] & mask:
            return False
        chunk[offset >> 3] |= mask
        return True
