"""skip_unchanged: a record is sent only when it differs from what the target already has.

Cube has no "changed since" filter, so every run reads every record of a full-table
partition. With skip_unchanged, a partition's state keeps a 64-bit hash (xxh3) of every
record as it was emitted (after coercion, selection and stream maps), and a record whose
hash is among them is not sent again. The record carries its key, so one hash answers
both questions: a new key, a changed value, a new field, a changed type or a changed
selection all give a hash the state lacks, and the record is sent. A false "unchanged"
needs two different records with one 64-bit hash: about n / 2**64 per changed record.

Compact and fast: the hashes are a sorted set, stored as the differences between
neighbours, byte-plane by byte-plane, zlib-compressed and base64'd (about 8 bytes each,
see `encode_hashes`), beside the ids that detect_deletions keeps. They are looked up
through an index of their leading bits, a few comparisons per record, in about 9 bytes
of memory per record.

Safe: the state is written when a stream is done, and a partition's hashes are replaced
only by a complete read (tap_cube/records/completeness.py). Before a partition sends its first
record they do not vouch for, a STATE without them is written
(tap_cube/records/partition_read.py `ChangeGate.lets_out`): a run stopped after
that makes the next one send the partition whole, so no record an aborted run sent is
later taken for unchanged.
"""

from __future__ import annotations

import binascii
import heapq
import itertools
import operator
import sys
import typing as t
import zlib
from array import array
from bisect import bisect_left

import msgspec
import xxhash

from tap_cube.records.state_text import Base64Text

if t.TYPE_CHECKING:
    from collections.abc import Iterable, Iterator, Sequence


#: The key of a partition's state that holds the hashes of the records it sent.
STATE_KEY = "record_hashes"
# Sorted keys: the same record hashes the same whatever order the server sends fields in.
_encode = msgspec.json.Encoder(order="sorted").encode
_hash = xxhash.xxh3_64_intdigest
_INDEX_BITS = 16
#: What stored hashes start with: the version of their format (":" is not base64).
FORMAT = "2:"
#: Hashes per block of the stored format (the last block may be shorter).
_BLOCK = 1 << 16


def record_hash(emitted: Sequence[tuple[str, dict[str, t.Any]]]) -> int:
    """The hash of a record as emitted: (stream, record) of each message its stream maps
    make of it."""
    if len(emitted) == 1:
        return _hash(_encode(emitted[0][1]))
    return _hash(_encode(emitted))


def encode_hashes(hashes: Iterable[int]) -> str:
    """Sorted hashes, for a partition's state: FORMAT, then base64 of the zlib stream of
    their differences, in blocks of _BLOCK, each stored byte-plane by byte-plane.

    Between n sorted random 64-bit hashes the differences are about 2**64 / n: their low
    bytes are random, their high bytes small or zero. Stored lowest bytes of the block
    first, then the next bytes, and so on (as Blosc's shuffle does), zlib leaves the low
    planes as they are and all but removes the high ones: about 6 bytes a hash, 8 with
    base64, where the differences as they are compress to 7. Taken a block at a time,
    so that the only whole copy made is the text itself.
    """
    compressor = zlib.compressobj(6)
    text = Base64Text(FORMAT)
    hashes = iter(hashes)
    previous = 0
    while block := array("Q", itertools.islice(hashes, _BLOCK)):
        differences = array("Q", map(operator.sub, block, itertools.chain((previous,), block)))
        previous = block[-1]
        if sys.byteorder == "big":
            differences.byteswap()  # the state is little-endian wherever it is read
        raw = differences.tobytes()
        text.add(compressor.compress(b"".join(raw[plane::8] for plane in range(8))))
    text.add(compressor.flush())
    return text.value()


def is_outdated(encoded: str) -> bool:
    """Whether stored hashes are of the format before FORMAT (zlib of the differences as
    they are), which is not read: such a partition is sent whole once."""
    return not encoded.startswith(FORMAT)


def decode_hashes(encoded: str) -> array[int]:
    """The sorted hashes of `encode_hashes`; ValueError saying what is wrong.

    Decompressed a block at a time into the result: a million hashes are 8 MB, once.
    """
    if is_outdated(encoded):
        msg = f"does not start with {FORMAT!r}"
        raise ValueError(msg)
    decompressor = zlib.decompressobj()
    hashes = array("Q")
    block_bytes = _BLOCK * 8
    pending = bytearray()
    try:
        for packed in _base64_slices(encoded, len(FORMAT)):
            pending += decompressor.decompress(packed)
            while len(pending) >= block_bytes:
                _add_block(hashes, pending[:block_bytes])
                del pending[:block_bytes]
        if len(pending) % 8:
            msg = f"{len(hashes) * 8 + len(pending)} bytes, not a whole number of 64-bit hashes"
            raise ValueError(msg)
        _add_block(hashes, pending)
    except zlib.error as exc:
        msg = f"not base64 of zlib data ({exc})"
        raise ValueError(msg) from None
    except OverflowError:
        msg = "the hashes are not in ascending order"
        raise ValueError(msg) from None
    if not decompressor.eof:
        msg = "not base64 of zlib data (the data is cut short)"
        raise ValueError(msg)
    return hashes


def _base64_slices(text: str, start: int) -> Iterator[bytes]:
    """The bytes of base64 `text` from `start`, a slice at a time (never all at once);
    ValueError for text that is not strictly base64 as a whole.

    Slices are whole groups of 4 characters, and the trailing padding goes with the last
    slice that has anything else: padding alone in a slice would be refused where the
    text read whole takes it.
    """
    step = 4 * _BLOCK
    end = max(start, len(text.rstrip("=")))
    at = start
    while True:
        last = at + step >= end
        part = text[at:] if last else text[at : at + step]
        if "=" in part and not last:
            msg = "not base64 of zlib data (padding before the end)"
            raise ValueError(msg)
        try:
            yield binascii.a2b_base64(part, strict_mode=True)
        except (binascii.Error, ValueError) as exc:
            msg = f"not base64 of zlib data ({exc})"
            raise ValueError(msg) from None
        if last:
            return
        at += step


def _add_block(hashes: array[int], planes: bytearray) -> None:
    """Appends the hashes of one block (byte planes of differences) to `hashes`."""
    count = len(planes) // 8
    raw = bytearray(len(planes))
    for plane in range(8):
        raw[plane::8] = planes[plane * count : (plane + 1) * count]
    differences = array("Q", raw)
    if sys.byteorder == "big":
        differences.byteswap()
    sums = itertools.accumulate(differences, initial=hashes[-1] if hashes else 0)
    next(sums)
    hashes.extend(sums)


def record_hashes_problem(value: object) -> str | None:
    """What is wrong with a partition's stored record hashes, or None when nothing is.

    Absent (a first run, or a state from before skip_unchanged) is fine, and so are
    hashes of an outdated format, which are not read.
    """
    if value is None:
        return None
    if not isinstance(value, str):
        return f"{STATE_KEY} is a {type(value).__name__}, not a string"
    if is_outdated(value):
        return None
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
        return self.position(digest) >= 0

    def position(self, digest: int) -> int:
        """Where `digest` is among the sorted hashes, or -1 when it is not there."""
        slot = digest >> (64 - self._bits)
        hashes, end = self._hashes, self._index[slot + 1]
        found = bisect_left(hashes, digest, self._index[slot], end)
        return found if found < end and hashes[found] == digest else -1


class ChangeFilter:
    """One partition's read under skip_unchanged: which records to send, and what to keep.

    `previous` holds the hashes of the last complete read. What this read keeps is those
    of them it met again (a byte per hash marks them) and the new ones, collected in 256
    arrays by their first byte, so that sorting them at the end needs no more than a
    256th of them as Python objects at a time. A daily re-run, which meets nearly every
    hash again, so holds the previous hashes and little more.
    """

    def __init__(self, previous: array[int]) -> None:
        #: The hashes of the last complete read, sorted.
        self.previous = previous
        self._lookup = HashSet(previous)
        self._met = bytearray(len(previous))
        self._new = [array("Q") for _ in range(256)]
        self.emitted = 0
        self.unchanged = 0

    def admits(self, emitted: Sequence[tuple[str, dict[str, t.Any]]]) -> bool:
        """Whether to send a record (its messages' stream and record as in `record_hash`);
        remembers its hash either way."""
        digest = record_hash(emitted)
        found = self._lookup.position(digest)
        if found >= 0:
            self._met[found] = 1
            self.unchanged += 1
            return False
        self._new[digest >> 56].append(digest)
        self.emitted += 1
        return True

    def finish(self) -> Iterator[int]:
        """The hashes of this read, sorted (a hash that repeats is kept once), for
        `encode_hashes`; the filter is spent once they are taken."""
        previous, met, new = self.previous, self._met, self._new
        self.previous, self._lookup = array("Q"), HashSet(array("Q"))
        self._met, self._new = bytearray(), []
        return heapq.merge(itertools.compress(previous, met), _sorted_buckets(new))


def _sorted_buckets(buckets: list[array[int]]) -> Iterator[int]:
    """The hashes of buckets by first byte, sorted and each once; a bucket is let go as
    soon as it is sorted."""
    buckets.reverse()
    while buckets:
        yield from sorted(set(buckets.pop()))
