"""Benchmark tap-cube against tap-rest-api-msdk and a naive `requests` loop.

Run by hand, not in CI, from the project root::

    uv run python benchmarks/tap_vs_others.py            # the full benchmark, a few minutes
    uv run python benchmarks/tap_vs_others.py --quick    # a tenth of the data, to try it out
    uv run python benchmarks/tap_vs_others.py --profile  # also profile tap-cube in scenario (a)
    uv run python benchmarks/tap_vs_others.py --wait-quiet 600  # on a shared machine

Every run talks to the project's Cube simulator (`python -m cube_simulator`), started
as a separate process, a fresh one for every run so that no contender finds pages cached
by the one before (lib/simulator_process.py). The contenders are tap-cube,
tap-rest-api-msdk 1.4.2 (installed by this script into `benchmarks/.venv-msdk`, which
.gitignore leaves out) and a naive loop, lib/naive_loop.py: how each is configured and
started is in lib/contenders.py.

Scenarios (lib/contenders.py): (a) no latency, 4 assignments of 50,000 customers; (b)
200 ms per page, 4 assignments of 10,000 customers; and tap-cube alone on 4 assignments
totalling 100,000 and 1,000,000 customers, to see whether its memory grows with the data.

What is measured, per run (lib/measurement.py): wall time, from starting the contender's
process to its exit (tap-cube's discovery aside, which runs before, untimed); records
counted from its stdout, a run that delivers fewer records than the simulator holds
being flagged (`--no-count` sends stdout to /dev/null instead); its peak memory and CPU
time from `wait4()`; and the CPU time other processes used meanwhile (lib/machine.py).

Each contender runs once, untimed, before the timed runs, and `--repeat N` reports the
median of N (lib/contest_runs.py). The figures are printed as Markdown, with the targets
the project aims at and whether this run met them; nothing is asserted
(lib/contest_report.py).
"""

from __future__ import annotations

import argparse
import shlex
import shutil
import sys
import tempfile
import time
from pathlib import Path
from typing import TYPE_CHECKING

from lib.common import progress
from lib.contenders import CONTENDERS, TAP_CUBE, ensure_msdk, scenarios
from lib.contest_report import Results, report
from lib.contest_runs import run_scenario, warm_up
from lib.machine import source_fingerprint, source_state
from lib.profiling import profile_tap_cube
from lib.tap_cube_setup import tap_cube_executable

if TYPE_CHECKING:
    from collections.abc import Sequence

    from lib.contenders import Contender, Scenario
    from lib.contest_runs import Run


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="benchmarks/tap_vs_others.py",
        description="Benchmark tap-cube against tap-rest-api-msdk and a naive requests loop.",
    )
    parser.add_argument(
        "--quick", action="store_true", help="a tenth of the customers in every scenario"
    )
    parser.add_argument(
        "--repeat", type=int, default=1, help="runs per figure; the median is reported"
    )
    parser.add_argument(
        "--no-count",
        action="store_true",
        help="send output to /dev/null and do not count records",
    )
    parser.add_argument(
        "--profile",
        action="store_true",
        help="also run tap-cube under cProfile in scenario (a) and summarise the profile",
    )
    parser.add_argument("--profile-top", type=int, default=15, help="functions per table")
    parser.add_argument(
        "--timeout", type=float, default=1800, help="seconds before a run is killed"
    )
    parser.add_argument(
        "--wait-quiet",
        type=float,
        default=0,
        metavar="SECONDS",
        help="before each run, wait up to this long for other processes to leave the "
        "machine idle (for a shared machine)",
    )
    parser.add_argument(
        "--keep", action="store_true", help="keep the configs, logs and profile of the run"
    )
    args = parser.parse_args(argv)
    if args.repeat < 1:
        parser.error("--repeat must be at least 1")

    started = time.perf_counter()
    fingerprint = source_fingerprint()
    source = source_state()
    command = shlex.join(["uv", "run", "python", "benchmarks/tap_vs_others.py", *sys.argv[1:]])
    tap_cube_executable()
    msdk = ensure_msdk()
    a, b, small, large = scenarios(quick=args.quick)
    count = not args.no_count

    workdir = Path(tempfile.mkdtemp(prefix="tap-cube-bench-"))
    try:
        warm_up(workdir, timeout=args.timeout)

        def run(scenario: Scenario, contenders: Sequence[Contender]) -> dict[str, Run]:
            return run_scenario(
                scenario,
                contenders,
                workdir,
                repeat=args.repeat,
                count=count,
                timeout=args.timeout,
                wait_quiet=args.wait_quiet,
            )

        results_a = run(a, CONTENDERS)
        results_b = run(b, CONTENDERS)
        small_run = run(small, CONTENDERS[:1])[TAP_CUBE]
        large_run = run(large, CONTENDERS[:1])[TAP_CUBE]
        profile = (
            profile_tap_cube(
                a, workdir, top=args.profile_top, timeout=args.timeout, wait_quiet=args.wait_quiet
            )
            if args.profile
            else ""
        )
        elapsed = time.perf_counter() - started
        text = report(
            Results(results_a, results_b, small_run, large_run),
            command=command,
            msdk=msdk,
            repeat=args.repeat,
            count=count,
            elapsed=elapsed,
            source=source,
            source_changed=source_fingerprint() != fingerprint,
        )
        print(text)
        if profile:
            print()
            print(profile)
    finally:
        if args.keep:
            progress(f"configs, logs and profile kept in {workdir}")
        else:
            shutil.rmtree(workdir, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
