"""What every benchmark shares: paths, the simulated data's shape, progress messages and
the environment a measured process gets.

The benchmark scripts import the shared modules as the package `lib`
(`from lib.common import ...`): a script's own folder is on `sys.path` when it runs as
`python benchmarks/<script>.py`, and mypy finds them the same way, `benchmarks/` holding
no `__init__.py`.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

LIB = Path(__file__).resolve().parent
BENCHMARKS = LIB.parent
ROOT = BENCHMARKS.parent
TOKEN = "sim-token"  # noqa: S105  # the simulator's default token, not a secret
#: The assignments every simulator serves, each with the same number of customers.
ASSIGNMENT_IDS = (1, 2, 3, 4)
#: The one stream the benchmarks sync (unless one says otherwise).
STREAM = "customers"
#: What customer ids look like (the simulator's `--id-style`): consecutive numbers,
#: numbers far apart (beyond 2**32) or text.
ID_STYLE_NAMES = ("dense", "sparse", "text")
#: Seconds before a run of tap-cube on a million customers is killed.
LONG_RUN_TIMEOUT = 3600

#: Variables that change how every measured process runs, cleared for a like-for-like run
#: with Python's defaults: unbuffered output turns each print into a write(2), and without
#: bytecode files every start-up compiles its imports again. VIRTUAL_ENV and PYTHONPATH
#: would point the msdk tap at the project's environment.
CLEARED_ENV = ("PYTHONUNBUFFERED", "PYTHONDONTWRITEBYTECODE", "VIRTUAL_ENV", "PYTHONPATH")
#: Settings a developer may have exported for their own runs; none reach a pipeline.
FOREIGN_PREFIXES = ("MELTANO_", "TAP_CUBE_", "TARGET_POSTGRES_", "TARGET_CSV_")


def progress(message: str) -> None:
    print(f"[bench] {message}", file=sys.stderr, flush=True)


def tail_lines(path: Path, n: int) -> list[str]:
    try:
        return path.read_text(errors="replace").splitlines()[-n:]
    except OSError:
        return []


def child_env() -> dict[str, str]:
    """This environment without the Python flags of CLEARED_ENV."""
    return {k: v for k, v in os.environ.items() if k not in CLEARED_ENV}


def base_env() -> dict[str, str]:
    """This environment without Python flags that slow start-up or foreign settings."""
    return {k: v for k, v in child_env().items() if not k.startswith(FOREIGN_PREFIXES)}
