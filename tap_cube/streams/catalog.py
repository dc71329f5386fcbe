"""A given catalog, reconciled with the records the tap emits.

Meltano caches the catalog of its last discovery, so a sync may get one discovered with
other settings (detect_deletions off) or by an older tap. The SDK takes the SCHEMA message
and the schema records are fitted to from that catalog; but some fields are added to
records whatever the schema says: the partition's fields (the SDK adds them from the
context), the rest of the record's key (which the target's rows and deletion records
are matched on) and, with detect_deletions, `_sdc_deleted_at`. Each missing one is
added to the catalog's entry (always selected, as discovery makes key fields), so that
the SCHEMA describes every record; a catalog that contradicts them cannot be fitted and
stops the run.

The key the records go out with (the catalog's `key_properties`, or a stream map's
`__key_properties__`) must be the stream's own: a key without a partition's field would
have a target upsert the rows of two partitions onto one (ids are unique only within
one), and one with a field more would add a row whenever its value changes, leaving
the old one live.
"""

from __future__ import annotations

import json
import typing as t

from singer_sdk.singerlib import Schema
from singer_sdk.singerlib.catalog import Metadata

from tap_cube.errors import CatalogError

if t.TYPE_CHECKING:
    from collections.abc import Collection, Iterable, Sequence

    from singer_sdk.mapper import StreamMap
    from singer_sdk.singerlib import Catalog, CatalogEntry

RUN_DISCOVERY = (
    "run discovery again (`tap-cube --discover`; with Meltano, `meltano run --refresh-catalog …`)"
)


class KeyedStream(t.Protocol):
    """What `refuse_other_keys` asks of a stream (a `CubeStream` is one)."""

    @property
    def name(self) -> str: ...
    @property
    def selected(self) -> bool: ...
    @property
    def record_key(self) -> list[str]:
        """The key its records must go out with."""

    @property
    def emitting_maps(self) -> list[StreamMap]:
        """The stream maps that make messages of its records."""


def _types(prop: dict[str, t.Any]) -> set[str]:
    types = prop.get("type")
    if types is None:
        return {"any"}
    return {types} if isinstance(types, str) else set(types)


def _described(prop: dict[str, t.Any]) -> str:
    types = sorted(_types(prop) - {"null"}) or ["null"]
    return " or ".join(types)


def reconcile(
    entry: CatalogEntry,
    added: dict[str, dict[str, t.Any]],
    deletion_fields: Collection[str] | None,
) -> None:
    """Make `entry` declare the `added` properties, or raise CatalogError saying why not.

    `deletion_fields` are the fields of a deletion record when the stream emits them:
    every other property must then allow null.
    """
    name = entry.stream or entry.tap_stream_id
    schema = entry.schema.to_dict()
    properties: dict[str, t.Any] = schema.setdefault("properties", {})
    for field, prop in added.items():
        declared = properties.get(field)
        if declared is None:
            properties[field] = dict(prop)
        elif "any" not in _types(declared) and not _types(prop) - {"null"} <= _types(declared):
            msg = (
                f"{name}: the catalog declares {field} as {_described(declared)}, but tap-cube "
                f"emits {_described(prop)}; {RUN_DISCOVERY}"
            )
            raise CatalogError(msg)
        metadata = entry.metadata.setdefault(("properties", field), Metadata())
        metadata.inclusion = Metadata.InclusionType.AUTOMATIC
    if deletion_fields is not None:
        for field, prop in properties.items():
            nullable = "null" in _types(prop) or "any" in _types(prop)
            if field not in deletion_fields and (
                not nullable or field in schema.get("required", ())
            ):
                msg = (
                    f"{name}: the catalog says {field} may not be null, but with "
                    f"detect_deletions a deletion record carries only its key; {RUN_DISCOVERY}"
                )
                raise CatalogError(msg)
    entry.schema = Schema.from_dict(schema)


def reconcile_selected(
    catalog: Catalog,
    name: str,
    added: dict[str, dict[str, t.Any]],
    deletion_fields: Collection[str] | None,
) -> None:
    """`reconcile` the catalog's entry of stream `name`, if it selects the stream: one it
    leaves unselected emits nothing, so there is nothing to reconcile."""
    entry = catalog.get_stream(name)
    if entry is not None and entry.metadata.resolve_selection()[()]:
        reconcile(entry, added, deletion_fields)


def refuse_other_keys(streams: Iterable[KeyedStream]) -> None:
    """Every selected stream goes out keyed on its `record_key`, or CatalogError says
    which key, whose, and what to do."""
    for stream in streams:
        if not stream.selected:
            continue
        needed = stream.record_key
        for stream_map in stream.emitting_maps:
            given = list(stream_map.transformed_key_properties or [])
            if sorted(given) == sorted(needed):
                continue
            if given == list(stream_map.raw_key_properties or []):
                msg = (
                    f"{stream.name}: the catalog's key_properties {json.dumps(given)} are not "
                    f"the key of its records, {json.dumps(needed)}: {_why(given, needed)}; "
                    f"set them to that key, or {RUN_DISCOVERY}"
                )
            else:
                msg = (
                    f"{stream.name}: the stream map's __key_properties__ {json.dumps(given)} "
                    f"for {stream_map.stream_alias} are not the key of its records, "
                    f"{json.dumps(needed)}: {_why(given, needed)}; leave __key_properties__ "
                    "out of the stream map, or set it to that key"
                )
            raise CatalogError(msg)


def _why(given: Sequence[str], needed: Sequence[str]) -> str:
    """What a target keyed on `given` rather than `needed` does to the rows."""
    if not given:
        return "a target without a key adds every record as a new row, and deletes none"
    if missing := [field for field in needed if field not in given]:
        return f"a target would keep records that differ only in {' or '.join(missing)} in one row"
    extra = [field for field in given if field not in needed]
    return f"a target would add a row whenever {' or '.join(extra)} changes, and keep the old one"
