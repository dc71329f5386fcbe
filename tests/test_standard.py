"""The Singer SDK's standard tap tests, against a simulator started for this module."""

from __future__ import annotations

import atexit
from datetime import timedelta

from singer_sdk.testing import get_tap_test_class

from cube_simulator import Crm, CubeSimulator, CustomField, demo_assignments
from tap_cube.tap import TapCube
from tests.conftest import TOKEN, cube_today

# The test class is built from a config at import time, so the simulator has to be up
# by then; it serves the small demo data set.
_SIMULATOR = CubeSimulator(demo_assignments(), token=TOKEN).start()
atexit.register(_SIMULATOR.stop)

TestTapCube = get_tap_test_class(
    tap_class=TapCube,
    config={"api_url": _SIMULATOR.url, "auth_token": TOKEN, "assignment_ids": [101, 202, 303]},
)

_EVERY_STREAM = CubeSimulator(
    demo_assignments(),
    token=TOKEN,
    crms=[Crm(3, "B2C", 120, [CustomField(64, "Adresse", "text")])],
    outcomes_start=cube_today() - timedelta(days=5),
).start()
atexit.register(_EVERY_STREAM.stop)

TestTapCubeEveryStream = get_tap_test_class(
    tap_class=TapCube,
    config={
        "api_url": _EVERY_STREAM.url,
        "auth_token": TOKEN,
        "assignment_ids": [101, 303],
        "crms": [{"data_owner_id": 3, "crm_type": "B2C"}],
        "start_date": (cube_today() - timedelta(days=5)).isoformat(),
    },
)

# A URL and a token only: the data owners are discovered, and every windowed stream of the
# data-owner era (call outcomes and product registrations, per campaign and per data owner)
# is offered and tested.
_DISCOVERED = CubeSimulator(
    [],
    token=TOKEN,
    crms=[
        Crm(3, "B2C", 120, [CustomField(64, "Adresse", "text")]),
        Crm(4, "B2B", 30, [CustomField(90, "Poeng", "integer")]),
    ],
    outcomes_start=cube_today() - timedelta(days=5),
).start()
atexit.register(_DISCOVERED.stop)

TestTapCubeDiscoveredCrms = get_tap_test_class(
    tap_class=TapCube,
    config={
        "api_url": _DISCOVERED.url,
        "auth_token": TOKEN,
        "start_date": (cube_today() - timedelta(days=5)).isoformat(),
    },
)
