"""The simulator answers as the notes show, not in a tidier form of its own.

Every field of every row the simulator serves by default must be one the notes' examples
show for that kind of list, and its value must have the format the newest example
showing the field gives it (e.g. a timestamp with an offset without a colon, a product
registration with only the local minute). So every test against the simulator also
meets what a real server sends, and the simulator cannot drift from the notes.
"""

from __future__ import annotations

import re
import typing as t
from datetime import date, timedelta

import pytest
import requests

from cube_simulator import Crm, CubeSimulator, demo_assignments
from tap_cube.records.formats import format_kind
from tests.notes import load_fixtures

#: Streams whose rows have one shape, whichever container they are read from.
GROUPS = {
    "customers": ("customers", "crm_customers"),
    "custom fields": ("customer_custom_fields", "crm_custom_fields"),
    "call flow": ("callflow_customers", "crm_callflow_customers"),
    "campaigns": ("campaigns",),
    "call outcomes": ("call_outcomes", "crm_call_outcomes"),
    "product registrations": ("product_registrations", "crm_product_registrations"),
}
#: Fields whose names are labels or ids a tenant defines: any of the family will do.
FAMILIES = {
    "customers": (r"crm__custom_info__[0-9]+",),
    "custom fields": (),
    "call flow": (r"crm__custom_info__[0-9]+", r"product__[A-Za-z0-9]+"),
    "campaigns": (),
    "call outcomes": (r"crm__custom_info__[0-9]+", r"call_outcome__extra__.+"),
    "product registrations": (
        r"crm__custom_info__[0-9]+",
        r"call_outcome__extra__.+",
        r"product__extra__.+",
    ),
}
#: The classes that say a value is missing, not how it is written.
BLANK = frozenset({"empty string", "blank", "null"})


def documented_formats(group: str) -> dict[str, set[str]]:
    """Per field the notes show for `group`, the formats the newest example showing it
    gives it (blank values say nothing about a format)."""
    streams = GROUPS[group]
    fixtures = [f for f in load_fixtures() if f.stream and f.keyed and not f.draft]
    newest: dict[str, str] = {}
    formats: dict[str, set[str]] = {}
    for fixture in sorted(fixtures, key=lambda f: f.source["date"], reverse=True):
        day = fixture.source["date"]
        for row in fixture.rows:
            for field, value in row.items():
                # Other lists repeat the customer's fields ("from the Cube CRM"), and show
                # some the customer examples leave out (the change log).
                if fixture.stream not in streams and not (
                    group == "customers" and field.startswith("crm__")
                ):
                    continue
                if newest.setdefault(field, day) == day:
                    formats.setdefault(field, set()).add(format_kind(value))
    return {field: found - BLANK for field, found in formats.items()}


def family(group: str, field: str) -> str | None:
    return next((p for p in FAMILIES[group] if re.fullmatch(p, field)), None)


@pytest.fixture(scope="module")
def served() -> t.Iterator[dict[str, list[dict[str, t.Any]]]]:
    """The rows of each group, as the demo simulator serves them."""
    today = date(2026, 3, 10)
    with CubeSimulator(
        demo_assignments(),
        crms=[Crm(7, "B2C", 300), Crm(7, "B2B", 40)],
        today=today,
        outcomes_start=date(2026, 3, 1),
        token="t",
    ) as sim:
        campaigns = sim.campaigns()
        owned = [t.cast("int", c["campaign__id"]) for c in campaigns if c.get("data_owner__id")]
        assigned = [t.cast("int", c["campaign__id"]) for c in campaigns if c.get("assignment__id")]
        window = (today - timedelta(days=9), today)

        def metadata(path: str) -> list[dict[str, t.Any]]:
            answer = requests.get(
                f"{sim.url}{path}", headers={"Authorization": "Token t"}, timeout=30
            )
            answer.raise_for_status()
            return t.cast("list[dict[str, t.Any]]", answer.json())

        yield {
            "customers": [*sim.customers(101)[:300], *sim.crm_customers(7, "B2C")],
            "custom fields": [
                *metadata("/assignments/101/crm_custom_fields/"),
                *metadata("/data_owners/7/B2C/crm_custom_fields/"),
            ],
            "call flow": [*sim.callflow_customers(101)[:300], *sim.callflow_customers((7, "B2C"))],
            "campaigns": campaigns,
            "call outcomes": [
                row for c in [*owned, *assigned] for row in sim.call_outcomes(c, *window)
            ],
            "product registrations": [
                row for c in owned for row in sim.product_registrations(c, *window)
            ],
        }


@pytest.mark.parametrize("group", sorted(GROUPS))
def test_simulated_rows_have_the_fields_and_formats_of_the_notes(served, group):
    documented = documented_formats(group)
    rows = served[group]
    assert rows, f"the demo serves no {group}"
    undocumented: set[str] = set()
    unlike: set[tuple[str, str, frozenset[str]]] = set()
    for row in rows:
        for field, value in row.items():
            if family(group, field):
                continue
            if field not in documented:
                undocumented.add(field)
                continue
            shown, found = documented[field], format_kind(value)
            if shown and found not in shown | BLANK:
                unlike.add((field, found, frozenset(shown)))
    assert not undocumented, f"{group}: fields no example of the notes shows: {undocumented}"
    assert not unlike, f"{group}: (field, simulated format, the notes' formats): {unlike}"


def test_the_check_finds_a_tidied_timestamp():
    """The check itself: the simulator's old tidy offset (with a colon) is caught."""
    shown = documented_formats("call outcomes")["call_outcome__report_as__submitted_when_timestamp"]
    assert format_kind("2026-03-02T08:57:51+01:00") not in shown
    assert format_kind("2026-03-02T08:57:51.123+0100") in shown
    assert "call_outcome__report_as__submitted_when_timestamp" not in documented_formats(
        "product registrations"
    )
