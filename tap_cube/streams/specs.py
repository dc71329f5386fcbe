"""Every stream the tap may offer, one row each: what it reads and how.

A row says the stream's name and path, how its list is split into partitions
(tap_cube/streams/partitions.py), the fields that tell its records apart, its fixed
columns and the `SchemaSource` of the rest (tap_cube/streams/discovery.py finds it),
whether it comes in pages, and whether detect_deletions and skip_unchanged apply.
`CubeStream` reads any row; a row names another `Reader` only where reading truly
differs (day windows: tap_cube/streams/call_outcomes.py). A stream is offered when the
settings it `needs` are set (tap_cube/streams/directory.py says when a need is met).

`stream_table` checks the rows when this module is imported: a row that discovery could
not build stops the import with one line, rather than a stream that is offered and
never built.
"""

from __future__ import annotations

import copy
import string
import typing as t
from dataclasses import dataclass, field
from enum import Enum

from typing_extensions import override

from tap_cube.streams.partitions import (
    ASSIGNMENTS,
    CAMPAIGNS,
    DATA_OWNERS,
    DATA_OWNERS_CAMPAIGNS,
    WHOLE,
    Partitions,
)
from tap_cube.streams.schema import (
    CALL_OUTCOME_EXTRA,
    CALL_OUTCOME_PROPERTIES,
    CALL_OUTCOME_TIMESTAMP,
    CALLFLOW_PROPERTIES,
    CAMPAIGN_DIALECT,
    CAMPAIGN_PROPERTIES,
    CUSTOM_FIELD_PREFIX,
    CUSTOM_FIELD_PROPERTIES,
    CUSTOMER_PROPERTIES,
    PRODUCT_EXTRA,
    PRODUCT_PROPERTIES,
    SUBMISSION_SEQ,
)

if t.TYPE_CHECKING:
    from collections.abc import Iterator, Mapping

    from tap_cube.streams.directory import Need


class Reader(Enum):
    """The stream class that reads a row, by its name: discovery.py makes it. Rows differ
    in code only where reading truly differs."""

    #: Any row, list by list: `CubeStream` (tap_cube/streams/cube_stream.py).
    LISTS = "CubeStream"
    #: Rows about calls, in day windows from a bookmark: `DayWindowStream`
    #: (tap_cube/streams/call_outcomes.py).
    DAY_WINDOWS = "DayWindowStream"


@dataclass(frozen=True)
class SchemaSource:
    """How discovery finds the columns of a stream that its spec cannot say in advance
    (discovery.py finds them, by the kind of source)."""

    #: The reader whose records the source samples; None: any.
    reader: t.ClassVar[Reader | None] = None

    def builds_on(self) -> tuple[str, ...]:
        """The streams whose schema or records it needs: offered whenever it is."""
        return ()

    def carries(self) -> tuple[str, ...]:
        """The streams whose custom fields it takes, of those offered."""
        return ()

    def declares(self, field: str) -> bool:
        """Whether discovering the schema again would give `field` a column of its own."""
        return False


@dataclass(frozen=True)
class Static(SchemaSource):
    """The spec's columns are all there is: no request."""


@dataclass(frozen=True)
class FromCustomFields(SchemaSource):
    """Customers: their custom fields, typed by the `metadata` stream's rows, and the
    fields the first page of each partition shows that the metadata does not list."""

    metadata: str

    @override
    def builds_on(self) -> tuple[str, ...]:
        return (self.metadata,)

    @override
    def declares(self, field: str) -> bool:
        # The metadata and the first page show any field: discovery would find it.
        return True


@dataclass(frozen=True)
class Extends(SchemaSource):
    """Another stream's schema plus `properties`, and the fields each partition's first
    page shows besides (call-flow rows are customers plus where each stands)."""

    stream: str
    properties: Mapping[str, dict[str, t.Any]]

    @override
    def builds_on(self) -> tuple[str, ...]:
        return (self.stream,)

    @override
    def declares(self, field: str) -> bool:
        return True


@dataclass(frozen=True)
class FromWindows(SchemaSource):
    """Rows about customers' calls carry customer fields: those the customers of
    `custom_fields_of` have (the offered ones), and those the rows of each partition's
    latest day window show."""

    reader = Reader.DAY_WINDOWS
    custom_fields_of: tuple[str, ...]

    @override
    def carries(self) -> tuple[str, ...]:
        return self.custom_fields_of

    @override
    def declares(self, field: str) -> bool:
        # Only the custom fields come from discovery (of customers); the rest is fixed.
        return field.startswith(CUSTOM_FIELD_PREFIX)


class SpecError(Exception):
    """A row of the stream table that discovery cannot build."""


@dataclass(frozen=True)
class StreamSpec:
    """One stream: what it reads, and how."""

    name: str
    #: Under api_url, with the partition's fields in braces.
    path: str
    partitions: Partitions
    #: The fields that tell records apart within one partition. One field is the
    #: record's id; with more, the reader's `record_identity` makes the id of them.
    key: tuple[str, ...]
    #: The columns every record has besides its partition's fields, in catalog order;
    #: the key's among them.
    properties: Mapping[str, dict[str, t.Any]]
    #: How discovery finds the columns `properties` cannot say in advance.
    schema_source: SchemaSource = field(default_factory=Static)
    #: DRF pages with `next` links; False: one plain JSON list.
    paginated: bool = True
    #: Whether detect_deletions applies: full lists, keyed by one id.
    tracks_deletions: bool = False
    #: Whether skip_unchanged applies: full lists, keyed by one id.
    tracks_changes: bool = False
    #: Settings it needs besides what its partitions need.
    also_needs: tuple[Need, ...] = ()
    #: Whether a partition answering 403 or 404 is skipped with a warning even when
    #: skip_inaccessible_assignments is off (for data some users may not see).
    optional: bool = False
    #: The first page's query parameters, each the value of a setting when it is set.
    params: Mapping[str, str] = field(default_factory=dict)
    #: What messages call one partition's list: "custom-field metadata" of assignment 7.
    list_name: str = ""
    #: Fields whose values are the API's words, not anyone's data: --probe keeps them.
    vocabulary: frozenset[str] = frozenset()
    #: Object columns gathering the free-form `<column>__<label>` fields, by label.
    extra_columns: tuple[str, ...] = ()
    #: The JSON Schema dialect its schema names (`$schema`), if it names one.
    dialect: str | None = None
    #: The stream class that reads it.
    reader: Reader = Reader.LISTS

    @property
    def needs(self) -> tuple[Need, ...]:
        """The settings the configuration must set for the tap to offer the stream."""
        return (*self.also_needs, *self.partitions.needs)

    @property
    def record_id(self) -> str | None:
        """The field that identifies a record within one partition, if one field does."""
        return self.key[0] if len(self.key) == 1 else None

    @property
    def id_schema(self) -> dict[str, t.Any]:
        """The key's fields with their columns."""
        return {name: self.properties[name] for name in self.key}

    def name_partition(self, context: Mapping[str, t.Any] | None) -> str:
        """How messages name a partition: "assignment 7", "data owner 3 (B2C)"."""
        list_name = f"{self.list_name} of " if self.list_name else ""
        if not context:
            return list_name + self.name
        first, *rest = context.values()
        extra = f" ({', '.join(str(value) for value in rest)})" if rest else ""
        return f"{list_name}{self.partitions.label} {first}{extra}"

    def base_schema(self) -> dict[str, t.Any]:
        """The schema before discovery: the partition's fields and `properties`; a copy
        of its own, for the stream to change."""
        key_schema = self.partitions.key_schema
        schema = {
            "type": "object",
            "properties": {**key_schema, **self.properties},
            "required": [*key_schema, *self.key],
        }
        if self.dialect is not None:
            schema["$schema"] = self.dialect
        return copy.deepcopy(schema)


def stream_table(*specs: StreamSpec) -> tuple[StreamSpec, ...]:
    """`specs`, once each can be built: else SpecError, naming the row and its fault."""
    by_name = {spec.name: spec for spec in specs}
    for spec in specs:
        fault = next(_faults(spec, by_name), None)
        if fault is None and [other.name for other in specs].count(spec.name) > 1:
            fault = "another row has its name"
        if fault is not None:
            msg = f"stream {spec.name!r} cannot be built: {fault}"
            raise SpecError(msg)
    return specs


def _faults(spec: StreamSpec, by_name: Mapping[str, StreamSpec]) -> Iterator[str]:
    """What keeps discovery from building `spec`, if anything."""
    source = spec.schema_source
    if not isinstance(source, SchemaSource):
        yield f"its schema source {source!r} is none that discovery knows"
        return
    if not isinstance(spec.partitions, Partitions):
        yield f"its partitions {spec.partitions!r} are of no kind partitions.py defines"
        return
    in_path = {name for _, name, _, _ in string.Formatter().parse(spec.path) if name}
    if in_path != set(spec.partitions.key_schema):
        yield f"its path names {sorted(in_path)}, its partitions {list(spec.partitions.key_schema)}"
    if not spec.key or not set(spec.key) <= set(spec.properties):
        yield f"its key {list(spec.key)} names no field, or one not among its properties"
    if (spec.tracks_deletions or spec.tracks_changes) and spec.record_id is None:
        yield "deletions and changes are tracked by one id, and its key has several fields"
    if spec.extra_columns and spec.reader is not Reader.DAY_WINDOWS:
        yield f"only {Reader.DAY_WINDOWS.value} gathers extra columns"
    if source.reader is not None and spec.reader is not source.reader:
        yield f"{type(source).__name__} finds schemas for {source.reader.value} only"
    for name in (*source.builds_on(), *source.carries()):
        if name not in by_name:
            yield f"its schema builds on {name!r}, which no row names"
        elif name in source.builds_on() and not set(by_name[name].needs) <= set(spec.needs):
            yield f"its schema builds on {name!r}, which needs settings it does not"
        elif name in source.builds_on() and _builds_on(by_name[name], spec.name, by_name):
            yield f"its schema builds on {name!r}, whose schema builds on it"


def _builds_on(spec: StreamSpec, name: str, by_name: Mapping[str, StreamSpec]) -> bool:
    """Whether `spec`'s schema is found from `name`'s, directly or not."""
    seen: set[str] = set()
    todo = list(spec.schema_source.builds_on())
    while todo:
        other = todo.pop()
        if other == name:
            return True
        if other in seen or other not in by_name:
            continue
        seen.add(other)
        source = by_name[other].schema_source
        todo += source.builds_on() if isinstance(source, SchemaSource) else ()
    return False


#: Customers' columns, and those of rows about customers' calls by day.
_CALL_OUTCOME_ROWS = {**CUSTOMER_PROPERTIES, **CALL_OUTCOME_PROPERTIES}
_PRODUCT_ROWS = {**_CALL_OUTCOME_ROWS, **PRODUCT_PROPERTIES}
_DAY_ROWS_KEY = ("crm__customer_id", CALL_OUTCOME_TIMESTAMP, SUBMISSION_SEQ)
#: Fields of custom-field metadata whose values are the API's words: they say how the
#: tap types a customer field, and which.
_METADATA_VOCABULARY = frozenset({"id", "type", "data__type", "lookup__id"})
_CRM = "/data_owners/{data_owner_id}/{crm_type}"
_CRM_SCOPED = "/data_owners/{data_owner_id}/crm/{crm_type}"

STREAM_SPECS: tuple[StreamSpec, ...] = stream_table(
    StreamSpec(
        name="customers",
        path="/assignments/{assignment_id}/customers/",
        partitions=ASSIGNMENTS,
        key=("crm__customer_id",),
        properties=CUSTOMER_PROPERTIES,
        schema_source=FromCustomFields("customer_custom_fields"),
        tracks_deletions=True,
        tracks_changes=True,
    ),
    StreamSpec(
        name="customer_custom_fields",
        path="/assignments/{assignment_id}/crm_custom_fields/",
        partitions=ASSIGNMENTS,
        key=("id",),
        properties=CUSTOM_FIELD_PROPERTIES,
        paginated=False,
        tracks_deletions=True,
        tracks_changes=True,
        # Some users may not read the metadata; their customers are still extracted.
        optional=True,
        list_name="custom-field metadata",
        vocabulary=_METADATA_VOCABULARY,
    ),
    StreamSpec(
        name="callflow_customers",
        path="/assignments/{assignment_id}/callflow_customers/",
        partitions=ASSIGNMENTS,
        key=("crm__customer_id",),
        properties=CUSTOMER_PROPERTIES,
        schema_source=Extends("customers", CALLFLOW_PROPERTIES),
        tracks_deletions=True,
        tracks_changes=True,
        params={"call_state": "callflow_call_state"},
    ),
    StreamSpec(
        name="crm_customers",
        path=f"{_CRM}/customers/",
        partitions=DATA_OWNERS,
        key=("crm__customer_id",),
        properties=CUSTOMER_PROPERTIES,
        schema_source=FromCustomFields("crm_custom_fields"),
        tracks_deletions=True,
        tracks_changes=True,
    ),
    StreamSpec(
        name="crm_custom_fields",
        path=f"{_CRM}/crm_custom_fields/",
        partitions=DATA_OWNERS,
        key=("id",),
        properties=CUSTOM_FIELD_PROPERTIES,
        paginated=False,
        tracks_deletions=True,
        tracks_changes=True,
        optional=True,
        list_name="custom-field metadata",
        vocabulary=_METADATA_VOCABULARY,
    ),
    StreamSpec(
        name="crm_callflow_customers",
        path=f"{_CRM_SCOPED}/callflow_customers/",
        partitions=DATA_OWNERS,
        key=("crm__customer_id",),
        properties=CUSTOMER_PROPERTIES,
        schema_source=Extends("crm_customers", CALLFLOW_PROPERTIES),
        tracks_deletions=True,
        tracks_changes=True,
        params={"call_state": "callflow_call_state"},
    ),
    StreamSpec(
        name="campaigns",
        path="/campaigns",
        partitions=WHOLE,
        key=("campaign__id",),
        properties=CAMPAIGN_PROPERTIES,
        paginated=False,
        tracks_changes=True,
        dialect=CAMPAIGN_DIALECT,
    ),
    StreamSpec(
        name="call_outcomes",
        path="/campaigns/{campaign_id}/call_outcomes/",
        partitions=CAMPAIGNS,
        key=_DAY_ROWS_KEY,
        properties=_CALL_OUTCOME_ROWS,
        schema_source=FromWindows(("customers", "crm_customers")),
        also_needs=("start_date",),
        extra_columns=(CALL_OUTCOME_EXTRA,),
        reader=Reader.DAY_WINDOWS,
    ),
    StreamSpec(
        # Only data owners' campaigns have product registrations.
        name="product_registrations",
        path="/campaigns/{campaign_id}/product_registrations/",
        partitions=DATA_OWNERS_CAMPAIGNS,
        key=_DAY_ROWS_KEY,
        properties=_PRODUCT_ROWS,
        schema_source=FromWindows(("crm_customers",)),
        also_needs=("start_date",),
        extra_columns=(CALL_OUTCOME_EXTRA, PRODUCT_EXTRA),
        reader=Reader.DAY_WINDOWS,
    ),
    StreamSpec(
        name="crm_call_outcomes",
        path=f"{_CRM_SCOPED}/call_outcomes/",
        partitions=DATA_OWNERS,
        key=_DAY_ROWS_KEY,
        properties=_CALL_OUTCOME_ROWS,
        schema_source=FromWindows(("crm_customers",)),
        also_needs=("start_date",),
        extra_columns=(CALL_OUTCOME_EXTRA,),
        reader=Reader.DAY_WINDOWS,
    ),
    StreamSpec(
        name="crm_product_registrations",
        path=f"{_CRM_SCOPED}/product_registrations/",
        partitions=DATA_OWNERS,
        key=_DAY_ROWS_KEY,
        properties=_PRODUCT_ROWS,
        schema_source=FromWindows(("crm_customers",)),
        also_needs=("start_date",),
        extra_columns=(CALL_OUTCOME_EXTRA, PRODUCT_EXTRA),
        reader=Reader.DAY_WINDOWS,
    ),
)


def spec_named(name: str) -> StreamSpec:
    """The row of STREAM_SPECS named `name`."""
    return next(spec for spec in STREAM_SPECS if spec.name == name)


#: The stream of /campaigns, which the run's directory reads for the other streams too.
CAMPAIGNS_SPEC = spec_named("campaigns")
