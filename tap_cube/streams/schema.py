"""The streams' fixed columns, and the types of the custom fields discovery finds.

Customers have standard fields plus the custom fields of every assignment or CRM;
discovery types those from the custom-field metadata and from sampled records.
"""

from __future__ import annotations

import typing as t

from singer_sdk import typing as th

from tap_cube.api.json_text import JsonText
from tap_cube.records.coercion import CATCH_ALL_PROPERTY
from tap_cube.records.converters import INT64_MAX, INT64_MIN
from tap_cube.records.deletions import DELETED_AT, DELETED_AT_SCHEMA

if t.TYPE_CHECKING:
    from collections.abc import Iterable, Mapping

CUSTOM_FIELD_PREFIX = "crm__custom_info__"

#: JSON schema of each Cube custom-field type; unknown types are text.
FIELD_TYPES: dict[str, dict[str, t.Any]] = {
    "text": {"type": ["string", "null"]},
    "integer": {"type": ["integer", "null"]},
    "number": {"type": ["number", "null"]},
    "date": {"type": ["string", "null"], "format": "date"},
    "boolean": {"type": ["boolean", "null"]},
}

STANDARD_CUSTOMER_FIELDS = (
    "crm__standard_info__name",
    "crm__standard_info__phone_1",
    "crm__standard_info__phone_2",
    "crm__standard_info__phone_3",
    "crm__standard_info__email",
    "crm__change_log__updated",
    "crm__change_log__updated_by",
    "crm__change_log__update_method",
)


#: A customer's id, as discovery declares it.
CUSTOMER_ID_SCHEMA: dict[str, t.Any] = {"type": "string"}


#: The fields every customer has besides its partition's: the id, the standard info, and
#: the catch-all for values that fit no column.
CUSTOMER_PROPERTIES: dict[str, t.Any] = {
    "crm__customer_id": CUSTOMER_ID_SCHEMA,
    **{name: {"type": ["string", "null"]} for name in STANDARD_CUSTOMER_FIELDS},
    **CATCH_ALL_PROPERTY,
}

#: Where each customer stands in the call flow, beside the customer fields.
CALLFLOW_PROPERTIES: dict[str, t.Any] = {
    "callflow__callstate__name": {"type": ["string", "null"]},
    "callflow__attempts_status__attempts": {"type": ["integer", "null"]},
    "callflow__last_change__when": {"type": ["string", "null"]},
}

#: A custom field's metadata: the labels for `crm__custom_info__<id>`.
CUSTOM_FIELD_PROPERTIES: dict[str, t.Any] = {
    **th.PropertiesList(
        th.Property("id", th.IntegerType, required=True),
        th.Property("key", th.StringType, description="The field's label"),
        th.Property("type", th.StringType, description="text, integer, date, boolean, ..."),
        th.Property("data__type", th.StringType, description="type, as some 2021 servers name it"),
        th.Property("max_length", th.IntegerType),
        th.Property("hint", th.StringType),
        th.Property("lookup__id", th.StringType, description="The customer field it describes"),
    ).to_dict()["properties"],
    **CATCH_ALL_PROPERTY,
}

#: A campaign, as /campaigns lists it in every era of the notes.
_CAMPAIGN = th.PropertiesList(
    th.Property("campaign__id", th.IntegerType, required=True),
    th.Property("campaign__name", th.StringType),
    th.Property("campaign__crm_type", th.StringType, description="B2C or B2B"),
    th.Property("campaign__type", th.StringType, description="Booking, Sales, ... (2018)"),
    th.Property("campaign__description", th.StringType),
    th.Property("campaign__start_date", th.DateType, description="Deprecated since 2022"),
    th.Property("campaign__end_date", th.DateType, description="Deprecated since 2022"),
    th.Property("campaign__archived_date", th.DateType),
    th.Property("campaign__is_active", th.BooleanType),
    th.Property("assignment__id", th.IntegerType, description="Assignment era"),
    th.Property("assignment__name", th.StringType),
    th.Property("client__id", th.IntegerType),
    th.Property("assignment__description", th.StringType),
    th.Property("client__short_name", th.StringType),
    th.Property("client__full_name", th.StringType),
    th.Property("crm_type__id", th.IntegerType, description="2019 notes"),
    th.Property("crm_type__name", th.StringType, description="2019 notes"),
    th.Property("data_owner__id", th.IntegerType, description="Data-owner era"),
    th.Property("data_owner__name", th.StringType),
    th.Property("service__id", th.IntegerType),
    th.Property("service__name", th.StringType),
).to_dict()
CAMPAIGN_PROPERTIES: dict[str, t.Any] = {**_CAMPAIGN["properties"], **CATCH_ALL_PROPERTY}
#: The JSON Schema dialect the campaigns schema names, as singer_sdk's typing made it.
CAMPAIGN_DIALECT: str = _CAMPAIGN["$schema"]


#: Rows about customers' calls (call outcomes, product registrations): when each was
#: submitted, its free-form fields by label, and its number among rows of one second.
CALL_OUTCOME_TIMESTAMP = "call_outcome__report_as__submitted_when_timestamp"
CALL_OUTCOME_SUBMITTED_WHEN = "call_outcome__report_as__submitted_when"
#: The local minute a row was submitted, as the 2019 notes name it.
CALL_OUTCOME_SUBMITTED_WHEN_2019 = "call_outcome__submitted_when"
#: Where a row says when it was submitted, best first: the timestamp, then the minute.
SUBMITTED = (CALL_OUTCOME_TIMESTAMP, CALL_OUTCOME_SUBMITTED_WHEN, CALL_OUTCOME_SUBMITTED_WHEN_2019)
CALL_OUTCOME_EXTRA = "call_outcome__extra"
PRODUCT_EXTRA = "product__extra"
SUBMISSION_SEQ = "submission_seq"
CALL_OUTCOME_PROPERTIES: dict[str, t.Any] = {
    "call_outcome__type": {"type": ["string", "null"]},
    "call_outcome__subtype": {"type": ["string", "null"]},
    "call_outcome__comment": {"type": ["string", "null"]},
    "call_outcome__report_as__submitted_by": {"type": ["string", "null"]},
    "call_outcome__report_as__submitted_in_department": {"type": ["string", "null"]},
    "call_outcome__report_as__submitted_in_team": {
        "type": ["string", "null"],
        "description": "The notes' name for submitted_in_department since 2022",
    },
    CALL_OUTCOME_SUBMITTED_WHEN: {"type": ["string", "null"]},
    CALL_OUTCOME_SUBMITTED_WHEN_2019: {
        "type": ["string", "null"],
        "description": "submitted_when as the 2019 notes name it",
    },
    "call_outcome__submitted_by": {
        "type": ["string", "null"],
        "description": "submitted_by as the 2019 notes name it",
    },
    "call_outcome__submitted_in_department": {
        "type": ["string", "null"],
        "description": "submitted_in_department as the 2019 notes name it",
    },
    CALL_OUTCOME_TIMESTAMP: {"type": "string", "format": "date-time"},
    "call_outcome__additional_input_text": {"type": ["string", "null"]},
    "campaign__name": {"type": ["string", "null"]},
    "assignment__name": {"type": ["string", "null"], "description": "Assignment era"},
    "client__short_name": {"type": ["string", "null"], "description": "Assignment era"},
    "crm_type__name": {"type": ["string", "null"], "description": "B2C or B2B (2019 notes)"},
    "campaign__crm_type": {"type": ["string", "null"]},
    "data_owner__name": {"type": ["string", "null"]},
    "segment__name": {"type": ["string", "null"]},
    CALL_OUTCOME_EXTRA: {
        "type": ["object", "null"],
        "additionalProperties": True,
        "description": "The free-form call_outcome__extra__<label> fields, keyed by label",
    },
    SUBMISSION_SEQ: {
        "type": "integer",
        "description": (
            "1 for the first row of this customer submitted in this second, 2 for the "
            "next: part of the key, so that rows sharing both (anonymized customers all "
            'have crm__customer_id "") are all kept'
        ),
    },
}
PRODUCT_PROPERTIES: dict[str, t.Any] = {
    "product__code": {"type": ["string", "null"]},
    "product__title": {"type": ["string", "null"]},
    "product__price": {"type": ["number", "null"]},
    PRODUCT_EXTRA: {
        "type": ["object", "null"],
        "additionalProperties": True,
        "description": "The free-form product__extra__<label> fields, keyed by label",
    },
}


def type_of_metadata(row: dict[str, t.Any]) -> str:
    # Some servers of 2021 name `type` `data__type` (CustomerCustomFields.md, November).
    kind = str(row.get("type") or row.get("data__type") or "text").lower()
    return kind if kind in FIELD_TYPES else "text"


def field_of_metadata(row: dict[str, t.Any]) -> str | None:
    """The record field a metadata row describes (older servers omit `lookup__id`)."""
    lookup = row.get("lookup__id")
    if isinstance(lookup, str) and lookup:
        return lookup
    if row.get("id") is None:
        return None
    return f"{CUSTOM_FIELD_PREFIX}{row['id']}"


def type_of_values(values: Iterable[object]) -> str:
    """The type sampled values show; "" and null say nothing, a mix is text."""
    kinds: set[str] = set()
    for value in values:
        if value is None or value == "" or type(value) is JsonText:
            continue  # say nothing of the field's type (JsonText: tap_cube/api/json_text.py)
        if isinstance(value, bool):
            kinds.add("boolean")
        elif isinstance(value, int):
            kinds.add("integer")
        elif isinstance(value, float):
            kinds.add("number")
        else:
            kinds.add("text")
    return merge_types(kinds) if kinds else "text"


def merge_types(kinds: set[str]) -> str:
    """One type for a field typed differently by different assignments."""
    if len(kinds) == 1:
        return next(iter(kinds))
    if kinds == {"integer", "number"}:
        return "number"
    return "text"


class FieldTypes:
    """Collects, per field, the types each source says it has."""

    def __init__(self) -> None:
        self._kinds: dict[str, set[str]] = {}
        self.labels: dict[str, str] = {}

    def add(self, field: str, kind: str) -> None:
        self._kinds.setdefault(field, set()).add(kind)

    def add_metadata(self, rows: Iterable[dict[str, t.Any]]) -> set[str]:
        """Record the types metadata declares; returns the fields it lists."""
        listed: set[str] = set()
        for row in rows:
            field = field_of_metadata(row)
            if field is None:
                continue
            listed.add(field)
            self.add(field, type_of_metadata(row))
            if isinstance(row.get("key"), str):
                self.labels.setdefault(field, row["key"])
        return listed

    def add_sample(self, records: list[dict[str, t.Any]], known: set[str]) -> None:
        """Type the fields records carry that nothing else described."""
        fields: dict[str, list[object]] = {}
        for record in records:
            for name, value in record.items():
                # A name no column can carry (NUL in it) stays in the catch-all.
                if name not in known and type(name) is str:
                    fields.setdefault(name, []).append(value)
        for name, values in fields.items():
            self.add(name, type_of_values(values))

    def properties(self) -> dict[str, t.Any]:
        result: dict[str, t.Any] = {}
        for field in sorted(self._kinds):
            prop = dict(FIELD_TYPES[merge_types(self._kinds[field])])
            if field in self.labels:
                prop["description"] = self.labels[field]
            result[field] = prop
        return result


def custom_properties(schema: dict[str, t.Any]) -> dict[str, t.Any]:
    """The custom-field properties of a customers schema."""
    return {
        name: prop
        for name, prop in schema["properties"].items()
        if name.startswith(CUSTOM_FIELD_PREFIX)
    }


def merge_properties(left: dict[str, t.Any], right: dict[str, t.Any]) -> dict[str, t.Any]:
    """Both sets of properties; a field the two type differently becomes text."""
    merged = dict(left)
    for name, prop in right.items():
        if name in merged and merged[name] != prop:
            merged[name] = dict(FIELD_TYPES["text"])
        else:
            merged[name] = prop
    return merged


def int64_bounded(prop: dict[str, t.Any]) -> dict[str, t.Any]:
    """An integer property with the int64 range that coerce() keeps to; others as they are.

    Declaring it makes targets pick bigint: without it pipelinewise-target-postgres picks
    numeric and target-duckdb HUGEINT.
    """
    if "integer" not in prop.get("type", ()):
        return prop
    return {**prop, "minimum": INT64_MIN, "maximum": INT64_MAX}


def carried_properties(
    key_fields: Mapping[str, dict[str, t.Any]], *, deletions: bool
) -> dict[str, dict[str, t.Any]]:
    """What records carry whatever the schema says: their key (which upserts, deletion
    records, the delivered ids and skip_unchanged's hashes rest on) and, when
    deletions are detected, `_sdc_deleted_at`."""
    carried = {name: int64_bounded(prop) for name, prop in key_fields.items()}
    if deletions:
        carried[DELETED_AT] = DELETED_AT_SCHEMA
    return carried


def declare_carried(properties: dict[str, t.Any], carried: Mapping[str, dict[str, t.Any]]) -> None:
    """Make `properties` (a stream's own) declare what records carry, every integer
    within int64."""
    for name, prop in carried.items():
        properties.setdefault(name, prop)
    for name, prop in properties.items():
        properties[name] = int64_bounded(prop)
