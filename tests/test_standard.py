"""The Singer SDK's standard tap tests, against a simulator started for this module."""

from __future__ import annotations

import atexit

from singer_sdk.testing import get_tap_test_class

from tap_cube.simulator import CubeSimulator, demo_assignments
from tap_cube.tap import TapCube
from tests.conftest import TOKEN

# The test class is built from a config at import time, so the simulator has to be up
# by then; it serves the small demo data set.
_SIMULATOR = CubeSimulator(demo_assignments(), token=TOKEN).start()
atexit.register(_SIMULATOR.stop)

TestTapCube = get_tap_test_class(
    tap_class=TapCube,
    config={"api_url": _SIMULATOR.url, "auth_token": TOKEN, "assignment_ids": [101, 202, 303]},
)
