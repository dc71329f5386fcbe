"""Remembering which ids a partition has delivered: exact, in memory that stays flat."""

from __future__ import annotations

import sqlite3
import typing as t

import msgspec
from pyroaring import BitMap

if t.TYPE_CHECKING:
    from collections.abc import Iterator

_MIN_NUMERIC, _MAX_NUMERIC = -(1 << 63), (1 << 63) - 1  # SQLite's INTEGER range
_MAX_SMALL = (1 << 32) - 1
_PENDING_LIMIT = 10_000


def numeric_id(record_id: object) -> int | None:
    """The id as an integer, when it is one: an int, or an int's own decimal text.

    An id and its decimal text are one id ("5" is 5, "-5" is -5, "0" is 0); text that
    is not how an int is written ("05", "+5", "5.0", " 5") is text, as it is to Cube.
    """
    if type(record_id) is str:
        digits = record_id[1:] if record_id[:1] == "-" else record_id
        if (
            digits.isascii()
            and digits.isdigit()
            and (digits[0] != "0" or record_id == "0")
            and len(digits) <= 19
        ):
            number = int(record_id)
            return number if _MIN_NUMERIC <= number <= _MAX_NUMERIC else None
        return None
    if type(record_id) is int and _MIN_NUMERIC <= record_id <= _MAX_NUMERIC:
        return record_id
    return None


class SeenIds:
    """A set of record ids whose memory does not depend on what the ids look like.

    Cube ids are the customer's own imported ids: usually numbers, often sparse, sometimes
    text. Numbers below 2**32 go into a compressed bitmap, exactly. Any other id is reduced
    to a 32-bit hash in a second bitmap, which stays small however the ids are spread, and
    is kept exactly in an on-disk table (SQLite's private temporary database) that is only
    read when a hash was seen before: a hash collision never drops a record.
    """

    __slots__ = ("_exact", "_hashes", "_pending", "_small")

    def __init__(self) -> None:
        self._small = BitMap()
        self._hashes = BitMap()
        self._exact: sqlite3.Connection | None = None
        self._pending: list[tuple[int | str | bytes]] = []

    def __len__(self) -> int:
        return len(self._small) + (self._exact_count() if self._hashes else 0)

    def add(self, record_id: object) -> bool:
        """Remember `record_id`; False when it was already there (or is None, no id)."""
        if (
            type(record_id) is str
            and 0 < len(record_id) < 10  # below 10**9, so below 2**32
            and record_id.isdigit()
            and record_id.isascii()
            and record_id[0] != "0"
        ):
            # The usual Cube id, on the hot path of every record.
            small = int(record_id)
            if small in self._small:
                return False
            self._small.add(small)
            return True
        number = numeric_id(record_id)
        if number is not None and 0 <= number <= _MAX_SMALL:
            if number in self._small:
                return False
            self._small.add(number)
            return True
        key = self._key(record_id, number)
        if key is None:
            return False
        # Python's own hash suits an in-process set, and str caches it.
        digest = hash(key) & _MAX_SMALL
        if digest not in self._hashes:
            self._hashes.add(digest)
            self._remember(key)
            return True
        # A known hash: this id or another with the same hash; the table knows which.
        if self._stored(key):
            return False
        self._remember(key)
        return True

    def __contains__(self, record_id: object) -> bool:
        number = numeric_id(record_id)
        if number is not None and 0 <= number <= _MAX_SMALL:
            return number in self._small
        key = self._key(record_id, number)
        if key is None or hash(key) & _MAX_SMALL not in self._hashes:
            return False
        return self._stored(key)

    @property
    def small_numbers(self) -> BitMap:
        """The numeric ids from 0 to 2**32 - 1, as a bitmap."""
        return self._small

    def other_ids(self) -> Iterator[int | str | bytes]:
        """Every other id: other numbers, text, and encoded compound ids."""
        if not self._hashes:
            return
        exact = self._table()
        self._flush(exact)
        for (key,) in exact.execute("SELECT id FROM ids"):
            yield key

    @staticmethod
    def _key(record_id: object, number: int | None) -> int | str | bytes | None:
        """The one form an id is kept in: an int, text, or the JSON of anything else."""
        if number is not None:
            return number
        if record_id is None:
            return None
        if isinstance(record_id, str):
            # A str subclass too: an id the lenient decoder kept as its JSON text.
            return str(record_id)
        if type(record_id) is int:
            return str(record_id)  # beyond SQLite's integers: as its decimal text
        return msgspec.json.encode(record_id)

    def _stored(self, key: int | str | bytes) -> bool:
        exact = self._table()
        self._flush(exact)
        return exact.execute("SELECT 1 FROM ids WHERE id = ?", (key,)).fetchone() is not None

    def _remember(self, key: int | str | bytes) -> None:
        self._pending.append((key,))
        if len(self._pending) >= _PENDING_LIMIT:
            self._flush(self._table())

    def _table(self) -> sqlite3.Connection:
        if self._exact is None:
            # "" is SQLite's private temporary database: on disk, removed when closed.
            self._exact = sqlite3.connect("", check_same_thread=False)
            self._exact.execute("CREATE TABLE ids (id PRIMARY KEY) WITHOUT ROWID")
        return self._exact

    def _flush(self, exact: sqlite3.Connection) -> None:
        if self._pending:
            exact.executemany("INSERT INTO ids VALUES (?)", self._pending)
            self._pending.clear()

    def _exact_count(self) -> int:
        exact = self._table()
        self._flush(exact)
        return int(exact.execute("SELECT count(*) FROM ids").fetchone()[0])

    def close(self) -> None:
        """Release the on-disk table, if one was made."""
        self._pending.clear()
        if self._exact is not None:
            self._exact.close()
            self._exact = None

    def __enter__(self) -> t.Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
