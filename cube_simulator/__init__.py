"""A fake Headshed Cube REST API (a Django REST Framework server) for tests and benchmarks.

Use it in-process::

    with CubeSimulator(demo_assignments()) as sim:
        requests.get(f"{sim.url}/assignments/101/customers/",
                     headers={"Authorization": f"Token {sim.token}"})

or from the command line: ``python -m cube_simulator --help``.
"""

from cube_simulator.capacity import CapacityModel
from cube_simulator.cli import main
from cube_simulator.facade import CubeSimulator
from cube_simulator.fake_values import ID_STYLES as ID_STYLES  # public, not in __all__
from cube_simulator.model import Assignment, Crm, CustomField, RequestRecord, demo_assignments

__all__ = [
    "Assignment",
    "CapacityModel",
    "Crm",
    "CubeSimulator",
    "CustomField",
    "RequestRecord",
    "demo_assignments",
    "main",
]
