"""skip_unchanged: a record is sent only when it differs from what the target already has.

Cube has no "changed since" filter, so every run reads every record of a full-table
partition. With skip_unchanged, a partition's state keeps a 64-bit hash (xxh3) of every
record as it was emitted (after coercion, selection and stream maps), and a record whose
hash is among them is not sent again. The record carries its key, so one hash answers
both questions: a new key, a changed value, a new field, a changed type or a changed
selection all give a hash the state lacks, and the record is sent. A false "unchanged"
needs two different records with one 64-bit hash: about n / 2**64 per changed record.

Compact and fast: the hashes are a sorted set, stored as the differences between
neighbours (about 7 bytes each), zlib-compressed and base64'd, beside the ids that
detect_deletions keeps. They are looked up through an index of their leading bits, a few
comparisons per record, in about 8 bytes of memory per record.

Safe: the state is written when a stream is done, and a partition's hashes are replaced
only by a complete read (tap_cube/records/completeness.py). Before a partition sends its first
record they do not vouch for, a STATE without them is written (CubeStream
`_withdraw_hashes`): a run stopped after that makes the next one send the partition
whole, so no record an aborted run sent is later taken for unchanged.
"""

from __future__ import annotations

import base64
import binascii
import itertools
import operator
import sys
import typing as t
import zlib
from array import array
from bisect import bisect_left

import msgspec
import xxhash

if t.TYPE_CHECKING:
    from collections.abc import Sequence


#: The key of a partition's state that holds the hashes of the records it sent.
STATE_KEY = "record_hashes"
# Sorted keys: the same record hashes the same whatever order the server sends fields in.
_encode = msgspec.json.Encoder(order="sorted").encode
_hash = xxhash.xxh3_64_intdigest
_INDEX_BITS = 16
#: Hashes (or compressed bytes) handled at a time when encoding and decoding.
_SLICE = 1 << 16


def record_hash(emitted: Sequence[tuple[str, dict[str, t.Any]]]) -> int:
    """The hash of a record as emitted: (stream, record) of each message its stream maps
    make of it."""
    if len(emitted) == 1:
        return _hash(_encode(emitted[0][1]))
    return _hash(_encode(emitted))


def encode_hashes(hashes: array[int]) -> str:
    """Sorted hashes, for a partition's state: differences (little-endian), zlib, base64.

    Differenced and compressed a slice at a time, so that no second copy of a million
    hashes is made on the way.
    """
    # Level 1: the differences are nearly random; harder work saves under 1%.
    compressor = zlib.compressobj(1)
    packed = bytearray()
    previous = 0
    for start in range(0, len(hashes), _SLICE):
        part = hashes[start : start + _SLICE]
        differences = array("Q", map(operator.sub, part, itertools.chain((previous,), part)))
        previous = part[-1]
        if sys.byteorder == "big":
            differences.byteswap()  # the state is little-endian wherever it is read
        packed += compressor.compress(differences)
    packed += compressor.flush()
    encoded = base64.b64encode(packed)
    del packed
    return encoded.decode("ascii")


def decode_hashes(encoded: str) -> array[int]:
    """The sorted hashes of `encode_hashes`; ValueError saying what is wrong.

    Decompressed a slice at a time into the result: a million hashes are 8 MB, once.
    """
    try:
        packed = base64.b64decode(encoded, validate=True)
    except (binascii.Error, ValueError) as exc:
        msg = f"not base64 of zlib data ({exc})"
        raise ValueError(msg) from None
    decompressor = zlib.decompressobj()
    hashes = array("Q")
    rest = b""
    try:
        for start in range(0, len(packed), _SLICE):
            raw = rest + decompressor.decompress(packed[start : start + _SLICE])
            whole = len(raw) - len(raw) % 8
            rest = raw[whole:]
            differences: Sequence[int] = memoryview(raw)[:whole].cast("Q")
            if sys.byteorder == "big":
                differences = array("Q", raw[:whole])
                differences.byteswap()
            sums = itertools.accumulate(differences, initial=hashes[-1] if hashes else 0)
            next(sums)
            hashes.extend(sums)
    except zlib.error as exc:
        msg = f"not base64 of zlib data ({exc})"
        raise ValueError(msg) from None
    except OverflowError:
        msg = "the hashes are not in ascending order"
        raise ValueError(msg) from None
    if not decompressor.eof:
        msg = "not base64 of zlib data (the data is cut short)"
        raise ValueError(msg)
    if rest:
        msg = f"{len(hashes) * 8 + len(rest)} bytes, not a whole number of 64-bit hashes"
        raise ValueError(msg)
    return hashes


def record_hashes_problem(value: object) -> str | None:
    """What is wrong with a partition's stored record hashes, or None when nothing is.

    Absent (a first run, or a state from before skip_unchanged) is fine.
    """
    if value is None:
        return None
    if not isinstance(value, str):
        return f"{STATE_KEY} is a {type(value).__name__}, not a string"
    try:
        decode_hashes(value)
    except ValueError as exc:
        return f"{STATE_KEY} is damaged: {exc}"
    return None


class HashSet:
    """Sorted hashes, with an index of their leading bits for a lookup in a few steps."""

    __slots__ = ("_bits", "_hashes", "_index")

    def __init__(self, hashes: array[int]) -> None:
        self._hashes = hashes
        # About 16 hashes per slot of the index, at most 2**16 slots.
        self._bits = max(0, min(_INDEX_BITS, len(hashes).bit_length() - 4))
        step = 1 << (64 - self._bits)
        self._index = array(
            "Q", (bisect_left(hashes, slot * step) for slot in range((1 << self._bits) + 1))
        )

    def __len__(self) -> int:
        return len(self._hashes)

    def __contains__(self, digest: int) -> bool:
        slot = digest >> (64 - self._bits)
        hashes, end = self._hashes, self._index[slot + 1]
        found = bisect_left(hashes, digest, self._index[slot], end)
        return found < end and hashes[found] == digest


class ChangeFilter:
    """One partition's read under skip_unchanged: which records to send, and what to keep.

    `previous` holds the hashes of the last complete read; the hashes of this read are
    collected in 256 arrays by their first byte, so that sorting them at the end needs
    no more than a 256th of them as Python objects at a time.
    """

    def __init__(self, previous: array[int]) -> None:
        #: The hashes of the last complete read, sorted.
        self.previous = previous
        self._lookup = HashSet(previous)
        self._buckets = [array("Q") for _ in range(256)]
        self.emitted = 0
        self.unchanged = 0

    def admits(self, emitted: Sequence[tuple[str, dict[str, t.Any]]]) -> bool:
        """Whether to send a record (its messages' stream and record as in `record_hash`);
        remembers its hash either way."""
        digest = record_hash(emitted)
        self._buckets[digest >> 56].append(digest)
        if digest in self._lookup:
            self.unchanged += 1
            return False
        self.emitted += 1
        return True

    def finish(self) -> array[int]:
        """The hashes of this read, sorted (a hash that repeats is kept once).

        The read is over: what it compared with and collected is let go as it goes.
        """
        self.previous = array("Q")
        self._lookup = HashSet(self.previous)
        buckets, self._buckets = self._buckets, []
        buckets.reverse()
        result = array("Q")
        while buckets:
            result.extend(sorted(set(buckets.pop())))
        return result
