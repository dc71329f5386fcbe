"""Each setting is written once, in the schema (tap_cube/settings.py): its type, default
and range. `Settings` reads every one of them, the checks word its range from there, and
a default the docs name is the schema's."""

from __future__ import annotations

import re
import typing as t
from decimal import Decimal
from pathlib import Path

import pytest

from tap_cube.settings import SETTINGS, Settings
from tap_cube.tap import TapCube
from tap_cube.validation import check_settings, without_range_errors


def _builtin_names() -> set[str]:
    schema: dict[str, t.Any] = {"properties": {}}
    TapCube.append_builtin_config(schema)
    return set(schema["properties"])


#: The tap's own settings (the SDK adds its built-in ones into SETTINGS as it validates).
PROPERTIES: dict[str, dict[str, t.Any]] = {
    name: prop for name, prop in SETTINGS["properties"].items() if name not in _builtin_names()
}
#: The Python type a setting of each JSON type is read as.
READ_AS = {"string": str, "integer": int, "number": float, "boolean": bool, "array": list}
RANGE_KEYWORDS = ("minimum", "exclusiveMinimum", "maximum")
RANGED = {n: prop for n, prop in PROPERTIES.items() if any(k in prop for k in RANGE_KEYWORDS)}
VALID = {
    "api_url": "https://acme.headshed.com/api/v1",
    "auth_token": "x" * 40,
    "assignment_ids": [1],
}


def test_settings_has_a_property_for_every_setting_of_the_schema():
    properties = {name for name, value in vars(Settings).items() if isinstance(value, property)}
    assert properties == set(PROPERTIES)


@pytest.mark.parametrize("name", sorted(PROPERTIES))
def test_a_setting_is_read_as_its_schema_type_with_its_default(name):
    prop = PROPERTIES[name]
    returned = t.get_type_hints(getattr(Settings, name).fget)["return"]
    kind = next(kind for kind in prop["type"] if kind != "null")
    assert READ_AS[kind] in (t.get_args(returned) or (returned,)) or (
        t.get_origin(returned) is READ_AS[kind]
    ), returned
    if "default" in prop:
        for left_out in ({}, {name: None}):
            assert getattr(Settings(left_out), name) == prop["default"]


def test_given_is_the_value_as_given():
    assert Settings({"max_retries": "8"}).given("max_retries") == "8"
    assert Settings({}).given("max_retries") is None
    assert Settings({"batch_config": {}}).given("batch_config") == {}


def test_every_range_of_the_schema_is_checked():
    assert set(RANGED) >= {"max_concurrent_requests", "max_deletion_share", "request_timeout"}
    for name, prop in RANGED.items():
        whole = "integer" in prop["type"]
        beyond = []
        if "minimum" in prop:
            beyond.append(prop["minimum"] - (1 if whole else Decimal("0.5")))
        if "exclusiveMinimum" in prop:
            beyond.append(prop["exclusiveMinimum"])
        if "maximum" in prop:
            beyond.append(prop["maximum"] + 1)
        for value in beyond:
            errors = check_settings({**VALID, name: value})
            assert len(errors) == 1, (name, value, errors)
            assert errors[0].startswith(f"{name} must "), errors
            inside = prop.get("minimum", prop.get("exclusiveMinimum", 0)) + 1
            assert not check_settings({**VALID, name: min(inside, prop.get("maximum", inside))})


def test_the_schema_validators_range_errors_give_way_to_the_checks_words():
    sdk_error = "0 is less than the minimum of 1 in config['max_concurrent_requests']"
    type_error = "'x' is not of type 'integer', 'null' in config['max_retries']"
    config = {**VALID, "max_concurrent_requests": 0, "max_retries": "x"}
    assert without_range_errors([sdk_error, type_error], config) == [type_error]


REPO = Path(__file__).parent.parent
#: A setting's default named in prose: "`max_retries` (default 8)", "`timezone` setting
#: (an IANA name, default `Europe/Oslo`)".
DEFAULT_IN_PROSE = re.compile(r"`(?P<name>[a-z_]+)`[^`]{0,40}?\bdefault:? `?(?P<value>[^,;)`\s]+)")


def test_the_defaults_the_docs_name_are_the_schemas():
    named = [
        (path.name, found["name"], found["value"])
        for path in [REPO / "README.md", *sorted((REPO / "docs").glob("*.md"))]
        for found in DEFAULT_IN_PROSE.finditer(re.sub(r"\s+", " ", path.read_text("utf-8")))
        if found["name"] in PROPERTIES
    ]
    assert len(named) >= 10, named  # the pattern still finds them
    wrong = [
        (page, name, value, PROPERTIES[name].get("default"))
        for page, name, value in named
        if value != str(PROPERTIES[name].get("default"))
    ]
    assert not wrong, f"(page, setting, default the page names, the schema's): {wrong}"
