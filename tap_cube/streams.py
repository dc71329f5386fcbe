"""Stream definitions for tap-cube."""

from __future__ import annotations

import typing as t

from singer_sdk import typing as th
from typing_extensions import override

from tap_cube.client import CubeStream
from tap_cube.errors import InaccessibleError
from tap_cube.schema import FieldTypes, customer_properties


class AssignmentStream(CubeStream):
    """A list read once per configured assignment."""

    partition_label = "assignment"
    partition_setting = "assignment_ids"

    @property
    @override
    def partitions(self) -> list[dict[str, t.Any]]:
        return [{"assignment_id": int(i)} for i in self.config.get("assignment_ids") or []]


class CustomersStream(AssignmentStream):
    """Every customer of every configured assignment."""

    name = "customers"
    path = "/assignments/{assignment_id}/customers/"
    primary_keys = ("assignment_id", "crm__customer_id")
    record_id_field = "crm__customer_id"

    @classmethod
    def base_schema(cls) -> dict[str, t.Any]:
        """The schema before custom fields are known."""
        return {
            "type": "object",
            "properties": customer_properties({"assignment_id": {"type": "integer"}}),
            "required": ["assignment_id", "crm__customer_id"],
        }


class CustomerCustomFieldsStream(AssignmentStream):
    """The custom-field metadata of each assignment: labels for `crm__custom_info__<id>`."""

    name = "customer_custom_fields"
    path = "/assignments/{assignment_id}/crm_custom_fields/"
    primary_keys = ("assignment_id", "id")
    record_id_field = "id"
    paginated = False
    # Some users may not read the metadata; their customers are still extracted.
    optional = True
    partition_label = "custom-field metadata of assignment"
    schema = th.PropertiesList(
        th.Property("assignment_id", th.IntegerType, required=True),
        th.Property("id", th.IntegerType, required=True),
        th.Property("key", th.StringType, description="The field's label"),
        th.Property("type", th.StringType, description="text, integer, date, boolean, ..."),
        th.Property("max_length", th.IntegerType),
        th.Property("hint", th.StringType),
        th.Property("lookup__id", th.StringType, description="The customer field it describes"),
    ).to_dict()


def discover_customer_schema(
    customers: CustomersStream, custom_fields: CustomerCustomFieldsStream
) -> dict[str, t.Any]:
    """The customers schema from each assignment's metadata and first page.

    Two requests per assignment: the custom-field metadata types the fields it lists,
    and the first page of customers shows any field the metadata does not list (or all
    of them, when the metadata is forbidden or missing), so no field is dropped.
    """
    schema = customers.base_schema()
    known = set(schema["properties"])
    types = FieldTypes()
    for context in customers.partitions:
        where = customers.describe_partition(context)
        listed: set[str] = set()
        try:
            listed = types.add_metadata(custom_fields.fetch_page(context, None).records)
        except InaccessibleError as exc:
            customers.logger.warning(
                "%s: custom-field metadata unavailable (%s); typing its fields from its "
                "first page of customers",
                where,
                exc,
            )
        try:
            sample = customers.fetch_page(context, None).records
        except InaccessibleError as exc:
            if not customers.config.get("skip_inaccessible_assignments"):
                raise
            customers.logger.warning("%s; leaving its fields out of the schema", exc)
            continue
        types.add_sample(sample, known | listed)
    schema["properties"].update(types.properties())
    return schema
