"""How a stream's records are fitted: set apart from the fields the tap writes itself,
keyed, fitted to their columns, and what fits no column reported.

Made once per stream from the schema its SCHEMA message carries, so that a record's
way (tap_cube/records/completeness.py `RecordPath`) never comes back to the stream.
"""

from __future__ import annotations

import typing as t
from dataclasses import dataclass
from functools import partial

from tap_cube.records import keys
from tap_cube.records.coercion import CATCH_ALL, RecordCoercion
from tap_cube.records.completeness import RecordPath
from tap_cube.records.deletions import DELETED_AT

if t.TYPE_CHECKING:
    import logging
    from collections.abc import Callable, Iterable
    from datetime import tzinfo

    from singer_sdk.helpers.types import Context

Record = dict[str, t.Any]


@dataclass(frozen=True)
class RecordFit:
    """A stream's records as they are prepared, keyed and fitted."""

    #: Every value of its declared type, or kept in the catch-all column.
    coercion: RecordCoercion
    #: Makes, for each read, the function that keys a record (RecordPath.keyer).
    keyer: Callable[[], Callable[[Record], object]]
    #: The record as it is emitted.
    fit: Callable[[Record], Record]
    #: The fields the tap writes into records itself, whatever the server sends.
    owned: tuple[str, ...]
    #: Whether discovering the schema again would give a field a column of its own.
    discovery_declares: Callable[[str], bool]

    @classmethod
    def of(
        cls,
        properties: dict[str, t.Any],
        zone: tzinfo,
        *,
        record_id: str | None,
        partition_keys: Iterable[str],
        discovery_declares: Callable[[str], bool],
    ) -> RecordFit:
        """Records keyed on `record_id` and fitted to `properties`, local times in `zone`."""
        coercion = RecordCoercion(properties, zone)
        return cls(
            coercion,
            keyer=keys.id_keyer_of(record_id, coercion),
            fit=coercion,
            owned=(*partition_keys, CATCH_ALL, DELETED_AT),
            discovery_declares=discovery_declares,
        )

    def path(self, context: Context | None) -> RecordPath:
        """How the records of the partition `context` are prepared, keyed and fitted."""
        prepare = partial(self.coercion.set_aside_owned, owned=self.owned, partition=context or {})
        return RecordPath(keyer=self.keyer, prepare=prepare, fit=self.fit)

    def coerce(self, record: Record) -> Record:
        """The record, every value of its declared type or kept in the catch-all column."""
        return self.fit(record)

    def report_unfit(self, stream_name: str, where: str, logger: logging.Logger) -> None:
        """One warning per field whose values fit no column in the partition `where`."""
        where = stream_name if where == stream_name else f"{stream_name}: {where}"
        for line in self.coercion.report(self.discovery_declares):
            logger.warning("%s: %s", where, line)
