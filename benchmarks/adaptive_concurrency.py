"""Adaptive concurrency against servers of limited capacity, side by side with a fixed 4.

Run by hand, not in CI, from the project root (a few minutes)::

    uv run python benchmarks/adaptive_concurrency.py
    uv run python benchmarks/adaptive_concurrency.py --only small

Each scenario serves 4 assignments from the Cube simulator (in this process, with its
capacity model: cube_simulator/capacity.py) and times `tap-cube` syncing the customers
stream from a catalog discovered beforehand, twice: as it runs by default (an adaptive
limit, max_concurrent_requests 16) and pinned at the old fixed 4
(`adaptive_concurrency: false`, `max_concurrent_requests: 4`). Printed per run: the wall
time of the sync against the ideal (pages x latency / the server's workers, or / 4 for
a server without a limit), the seconds from the first request to the last, the server's
busiest moment (most requests it held at once), the 429s it answered, the limit the
last partition settled at, and whether every customer came exactly once. Nothing is
asserted; the exit status is 1 when a run failed or was incomplete.
"""

from __future__ import annotations

import argparse
import json
import math
import re
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from lib.common import ASSIGNMENT_IDS, ROOT, STREAM, TOKEN, base_env, progress
from lib.tap_cube_setup import discover_catalog, sync_argv, tap_cube_executable, write_config

from cube_simulator import Assignment, CapacityModel, CubeSimulator

LATENCY = 0.2
SETTLED = re.compile(r"\| customers: assignment \d+ done: .*; limit (\d+) of (\d+) requests")


@dataclass(frozen=True)
class Scenario:
    key: str
    title: str
    per_assignment: int
    page_size: int
    capacity: CapacityModel
    #: Requests the server serves well at once: what the ideal divides by.
    parallel: int
    target: str = ""

    @property
    def pages(self) -> int:
        return len(ASSIGNMENT_IDS) * math.ceil(self.per_assignment / self.page_size)

    @property
    def ideal(self) -> float:
        return self.pages * LATENCY / self.parallel


SCENARIOS = (
    Scenario(
        "roomy",
        "roomy server: 16 workers, a deep queue",
        5_000,
        50,
        CapacityModel(workers=16, queue=1_000),
        16,
        "<= 1.6x the ideal at 16 in flight",
    ),
    Scenario(
        "small",
        "small server: 2 workers, 1 may wait, 429 (Retry-After: 1) beyond",
        1_250,
        50,
        CapacityModel(workers=2, queue=1, retry_after=1),
        2,
        "<= 1.3x the ideal at 2 in flight, <= 10 answers 429, exit 0",
    ),
    Scenario(
        "doubling",
        "latency doubles above 8 in flight (no worker limit)",
        5_000,
        50,
        CapacityModel(slow_above=8),
        8,
    ),
    Scenario(
        "bursts",
        "16 workers, 429 (Retry-After: 1) to everything for 1 s of every 5 s",
        5_000,
        50,
        CapacityModel(workers=16, queue=1_000, bursts=(5.0, 1.0), retry_after=1),
        16,
    ),
    Scenario(
        "latency",
        "today's latency case: 4 x 10,000 customers, 200 ms, no limit",
        10_000,
        500,
        CapacityModel(),
        4,
        "no slower than the fixed 4",
    ),
)
#: How each scenario is read: tap-cube's defaults, and the old fixed behaviour.
CONTENDERS: tuple[tuple[str, dict[str, object]], ...] = (
    ("adaptive (default, up to 16)", {}),
    ("fixed 4 (old default)", {"adaptive_concurrency": False, "max_concurrent_requests": 4}),
)


@dataclass(frozen=True)
class Result:
    contender: str
    wall: float
    span: float
    busiest: int
    throttled: int
    settled: str
    complete: bool
    returncode: int


def simulator(scenario: Scenario) -> CubeSimulator:
    return CubeSimulator(
        [Assignment(i, scenario.per_assignment) for i in ASSIGNMENT_IDS],
        token=TOKEN,
        page_size=scenario.page_size,
        latency=LATENCY,
        next_style="same",
        capacity=scenario.capacity,
    )


def catalog_for(scenario: Scenario, workdir: Path) -> Path:
    """The customers catalog, discovered from a simulator of the same data without limits."""
    tap = tap_cube_executable()
    with CubeSimulator(
        [Assignment(i, scenario.per_assignment) for i in ASSIGNMENT_IDS], token=TOKEN
    ) as sim:
        config = write_config(workdir / "discover.json", sim.url)
        return discover_catalog(tap, config, workdir / f"catalog-{scenario.key}.json")


def complete(stdout: bytes, sim: CubeSimulator) -> bool:
    """Whether every customer of every assignment came exactly once."""
    got = []
    for line in stdout.splitlines():
        message = json.loads(line)
        if message.get("type") == "RECORD" and message.get("stream") == STREAM:
            record = message["record"]
            got.append((record["assignment_id"], record["crm__customer_id"]))
    expected = [(a, c["crm__customer_id"]) for a in ASSIGNMENT_IDS for c in sim.customers(a)]
    return len(got) == len(set(got)) and sorted(got, key=str) == sorted(expected, key=str)


def measure(scenario: Scenario, catalog: Path, workdir: Path) -> list[Result]:
    tap = tap_cube_executable()
    results = []
    for name, settings in CONTENDERS:
        progress(f"{scenario.key}: {name}")
        with simulator(scenario) as sim:
            config = write_config(workdir / "config.json", sim.url, ASSIGNMENT_IDS, **settings)
            started = time.monotonic()
            run = subprocess.run(  # noqa: S603  # argv built here
                sync_argv(tap, config, catalog),
                cwd=ROOT,
                env=base_env(),
                stdin=subprocess.DEVNULL,
                capture_output=True,
                check=False,
            )
            wall = time.monotonic() - started
            arrivals = [r.time for r in sim.requests]
            settled = SETTLED.findall(run.stderr.decode(errors="replace"))
            results.append(
                Result(
                    name,
                    wall,
                    max(arrivals) - min(arrivals) if arrivals else 0.0,
                    sim.capacity.busiest,
                    sum(r.status == 429 for r in sim.requests),
                    f"{settled[-1][0]} of {settled[-1][1]}" if settled else "-",
                    complete(run.stdout, sim),
                    run.returncode,
                )
            )
            if run.returncode != 0:
                progress(run.stderr.decode(errors="replace")[-2000:])
    return results


def report(scenario: Scenario, results: list[Result]) -> None:
    print(f"\n### {scenario.title}")
    print(
        f"\n{scenario.pages} pages of {scenario.page_size}, {LATENCY * 1000:g} ms each; "
        f"ideal {scenario.ideal:.1f} s (pages x latency / {scenario.parallel})"
        + (f"; target: {scenario.target}" if scenario.target else "")
        + "\n"
    )
    print(
        "| contender | wall (s) | x ideal | first to last request (s) | busiest (in flight) "
        "| 429s | settled limit | every customer once | exit |"
    )
    print("|---|---:|---:|---:|---:|---:|---|---|---:|")
    for r in results:
        print(
            f"| {r.contender} | {r.wall:.1f} | {r.wall / scenario.ideal:.2f}x | {r.span:.1f} "
            f"| {r.busiest} | {r.throttled} | {r.settled} | {'yes' if r.complete else 'NO'} "
            f"| {r.returncode} |"
        )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--only", choices=[s.key for s in SCENARIOS], action="append")
    args = parser.parse_args()
    chosen = [s for s in SCENARIOS if not args.only or s.key in args.only]
    failed = False
    command = " ".join(["uv run python benchmarks/adaptive_concurrency.py", *sys.argv[1:]])
    print(f"Command: `{command}`")
    with tempfile.TemporaryDirectory(prefix="adaptive-") as tmp:
        workdir = Path(tmp)
        for scenario in chosen:
            catalog = catalog_for(scenario, workdir)
            results = measure(scenario, catalog, workdir)
            report(scenario, results)
            failed |= any(r.returncode != 0 or not r.complete for r in results)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
