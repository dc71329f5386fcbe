"""Which streams a configuration offers, and the warning for one it does not, both follow
the settings each stream's spec declares it `needs`."""

from __future__ import annotations

import logging

import pytest

from tap_cube.settings import SETTINGS, Settings
from tap_cube.streams.specs import STREAM_SPECS
from tap_cube.tap import TapCube

CRMS = [{"data_owner_id": 3, "crm_type": "B2C"}]

#: Configurations, and the needs each of them meets.
CASES = [
    ({"assignment_ids": [7]}, {"assignment_ids"}),
    ({"crms": CRMS}, {"crms"}),
    ({}, {"crms"}),  # neither: the data owners are discovered
    ({"assignment_ids": [7], "crms": CRMS}, {"assignment_ids", "crms"}),
    ({"assignment_ids": [7], "discover_crms": True}, {"assignment_ids", "crms"}),
    ({"assignment_ids": [7], "discover_crms": False}, {"assignment_ids"}),
]


def selecting_every_stream() -> dict:
    return {
        "streams": [
            {
                "tap_stream_id": spec.name,
                "stream": spec.name,
                "schema": {"type": "object", "properties": {}},
                "metadata": [{"breadcrumb": [], "metadata": {"selected": True}}],
            }
            for spec in STREAM_SPECS
        ]
    }


@pytest.mark.parametrize("start_date", [None, "2024-01-01"])
@pytest.mark.parametrize(("settings", "met"), CASES)
def test_streams_are_offered_and_warned_about_as_they_declare(settings, met, start_date, caplog):
    config = {"api_url": "https://cube.example/api/v1", "auth_token": "t" * 40, **settings}
    if start_date:
        config["start_date"] = start_date
        met = {*met, "start_date"}
    # Given a catalog, the tap makes no request to find its streams.
    with caplog.at_level(logging.WARNING):
        tap = TapCube(config=config, catalog=selecting_every_stream())
        offered = set(tap.streams)
    assert offered == {spec.name for spec in STREAM_SPECS if set(spec.needs) <= met}
    warnings = [r.getMessage() for r in caplog.records if "does not offer it" in r.getMessage()]
    for spec in STREAM_SPECS:
        said = [w for w in warnings if w.startswith(f"stream {spec.name!r} is selected")]
        if spec.name in offered:
            assert not said, spec.name
            continue
        assert len(said) == 1, (spec.name, warnings)
        reason = said[0].split("(it needs ", 1)[1].split(")", 1)[0]
        for need in ("assignment_ids", "crms", "start_date"):
            assert (need in reason) == (need in spec.needs), (spec.name, said[0])


def test_a_setting_left_out_or_null_reads_its_default_from_the_schema():
    # The SDK's built-in settings are the SDK's to read; tests/test_settings.py checks that
    # every setting of the tap has its property.
    for name, prop in SETTINGS["properties"].items():
        if "default" in prop and hasattr(Settings, name):
            assert getattr(Settings({}), name) == prop["default"], name
            assert getattr(Settings({name: None}), name) == prop["default"], name
    assert Settings({"max_concurrent_requests": 9}).max_concurrent_requests == 9
