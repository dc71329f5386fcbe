"""Fitting the rows of day-window streams (call outcomes, product registrations).

Their rows carry free-form `<column>__<label>` fields, which one object column per
prefix gathers by label, and say when they were submitted in one of several fields,
of which the instant that orders and keys the row goes into the timestamp column.
"""

from __future__ import annotations

import typing as t

from tap_cube.api.json_text import JsonText
from tap_cube.errors import ApiError
from tap_cube.records.converters import UNFIT, nearest_instant, to_date_time

if t.TYPE_CHECKING:
    from collections.abc import Sequence
    from datetime import tzinfo

    from tap_cube.records.coercion import RecordCoercion

Record = dict[str, t.Any]


class DayRowFit:
    """A row's free-form fields gathered, its instant in the timestamp column, and every
    value fitted by `coercion`."""

    def __init__(
        self,
        coercion: RecordCoercion,
        zone: tzinfo,
        *,
        stream_name: str,
        timestamp_field: str,
        submitted_fields: Sequence[str],
        extra_columns: Sequence[str],
    ) -> None:
        self._coercion = coercion
        self._zone = zone
        self._stream_name = stream_name
        self._timestamp = timestamp_field
        self._submitted = submitted_fields
        self._extra_columns = extra_columns

    def __call__(self, record: Record) -> Record:
        # Labels are free text that differ per campaign: one object column holds them all.
        for column in self._extra_columns:
            prefix = column + "__"
            # A value kept as JSON text stays a field of its own (of the catch-all).
            extras = {
                name[len(prefix) :]: record.pop(name)
                for name, value in list(record.items())
                if type(name) is str and name.startswith(prefix) and type(value) is not JsonText
            }
            record[column] = extras or None
        self._key_by_instant(record)
        return self._coercion(record)

    def _key_by_instant(self, record: Record) -> None:
        """Put in the timestamp column the instant that orders and keys the row.

        Its timestamp, else its local minute (in the `timezone` setting's zone; rows of
        the notes' examples carry only that). When neither names an instant a datetime
        holds (year 1 or 9999 moved by an offset), the nearest one there is. A timestamp
        that is no instant is kept as sent in the catch-all.
        """
        timestamp = self._timestamp
        sent = [(field, record[field]) for field in self._submitted if record.get(field)]
        if not sent:
            msg = (
                f"{self._stream_name}: the server sent a row without {timestamp} "
                "or its submitted_when; it cannot be keyed. Report it to Headshed."
            )
            raise ApiError(msg)
        column = ""
        found = next(
            ((f, w) for f, v in sent if (w := to_date_time(v, self._zone)) is not UNFIT), None
        )
        if found is None:
            column = "the nearest instant"
            found = next(((f, w) for f, v in sent if (w := nearest_instant(v)) is not UNFIT), None)
        if found is None:
            # No instant at all: coercion stops the run, the row cannot be keyed.
            record[timestamp] = sent[0][1]
            return
        field, when = found
        stamp = record.get(timestamp)
        if stamp and (column or field != timestamp):
            column = column or f"its {field}"
            self._coercion.keep_aside(record, timestamp, stamp, column)
        record[timestamp] = when
