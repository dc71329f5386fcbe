"""tap-cube under cProfile in one scenario of benchmarks/tap_vs_others.py (`--profile`),
and a Markdown summary of the profile: the top functions by own and by cumulative time.
"""

from __future__ import annotations

import contextlib
import io
import pstats
import sys
from pathlib import Path
from typing import TYPE_CHECKING

from lib.common import ROOT, child_env, progress
from lib.contenders import tap_cube_command
from lib.machine import wait_for_quiet
from lib.measurement import RECORD_MARK, counting, measure
from lib.simulator_process import SimulatorProcess

if TYPE_CHECKING:
    from collections.abc import Callable

    from lib.contenders import Scenario


def profile_tap_cube(
    scenario: Scenario, workdir: Path, *, top: int, timeout: float, wait_quiet: float
) -> str:
    """Run tap-cube under cProfile in `scenario`; a Markdown summary of the profile."""
    out = workdir / "tap-cube.prof"
    progress(f"profiling tap-cube: {scenario.describe()}")
    if wait_quiet > 0:
        wait_for_quiet(wait_quiet)
    with SimulatorProcess(scenario.per_assignment, workdir, latency=scenario.latency) as sim:
        argv = [
            sys.executable,
            "-m",
            "cProfile",
            "-o",
            str(out),
            *tap_cube_command(sim.url, scenario, workdir),
        ]
        sample = measure(
            argv,
            read=counting(RECORD_MARK),
            timeout=timeout,
            log=workdir / "profile.log",
            env=child_env(),
            server_pid=sim.pid,
        )
    wall, records, code = sample.wall, sample.records, sample.returncode
    if code != 0 or not out.exists():
        return f"The profiled run failed (exit {code}); see {workdir / 'profile.log'}."
    profile = pstats.Stats(str(out), stream=io.StringIO()).get_stats_profile()
    functions = list(profile.func_profiles.items())

    def table(title: str, key: Callable[[tuple[str, pstats.FunctionProfile]], float]) -> list[str]:
        lines = [
            f"Top {top} by {title}:",
            "",
            "| Function | Where | Calls | Own time (s) | Cumulative (s) |",
            "|---|---|---:|---:|---:|",
        ]
        for name, fp in sorted(functions, key=key, reverse=True)[:top]:
            where = f"{short_path(fp.file_name)}:{fp.line_number}"
            lines.append(
                f"| `{name}` | {where} | {fp.ncalls} | {fp.tottime:.2f} | {fp.cumtime:.2f} |"
            )
        return [*lines, ""]

    rate = (records or 0) / wall
    header = [
        f"### Profile of tap-cube, scenario {scenario.title}",
        "",
        f"Under cProfile: {wall:.1f} s wall, {records or 0:,} records ({rate:,.0f} records/s), "
        f"{profile.total_tt:.1f} s profiled. cProfile sees the main thread only (where "
        "records are checked, coerced, wrapped in messages and written); the fetch "
        "workers' HTTP and JSON decoding run in other threads and are not in these "
        f"tables. Profile data: `{out}` (deleted with the run's temporary directory "
        "unless --keep).",
        "",
    ]
    by_own = table("own time", lambda item: item[1].tottime)
    by_cumulative = table("cumulative time", lambda item: item[1].cumtime)
    return "\n".join(header + by_own + by_cumulative)


def short_path(path: str) -> str:
    for marker in ("site-packages/", "lib/python3"):
        if marker in path:
            return path.split(marker, 1)[1]
    with contextlib.suppress(ValueError):
        return str(Path(path).relative_to(ROOT))
    return path
