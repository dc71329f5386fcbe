"""Is this build slower than another? tap-cube alone, the two builds taking turns.

Run by hand, not in CI, from the project root, with the other build checked out beside
it and synced (`git worktree add ../base <commit>`, then `uv sync --frozen` there)::

    uv run python benchmarks/compare_builds.py ../base           # re-runs, 500,000 customers
    uv run python benchmarks/compare_builds.py ../base --first   # first runs, all records sent
    uv run python benchmarks/compare_builds.py ../base --set max_concurrent_requests=4 \
        --set adaptive_concurrency=false                         # a fixed limit in both
    uv run python benchmarks/compare_builds.py ../base --instructions --customers 25000

One simulator (lib/simulator_process.py) serves both builds. Each gets its own config
(skip_unchanged on, and any `--set`) and its own catalog of `customers` alone. Unless
`--first`, each build first runs once untimed, and its timed runs start from the state
that run left: the daily re-run of an unchanged table, where nothing is sent and the
tap's own work on each record is nearly all it does. The rounds alternate which build
goes first, so that a slow spell of a shared machine falls on both. Printed: each run's
wall time and CPU time (the tap process's own, from `wait4`), the CPU other processes
used meanwhile, and the medians. Runs of one build on a shared machine spread by 10% or
more: compare medians of several rounds, and CPU before wall time.

With `--instructions`, each build runs once under valgrind's callgrind instead, which
counts the instructions it executes, a figure a busy machine does not disturb: printed
are the whole run's (every thread) and the main thread's, where records are processed
(pages are fetched and decoded on the others). It runs some fifty times slower, hence
fewer customers. Start-up alone is `valgrind --tool=callgrind tap-cube --about`.
"""

from __future__ import annotations

import argparse
import json
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

from lib.common import ASSIGNMENT_IDS, base_env, progress
from lib.measurement import Sample, measure
from lib.simulator_process import SimulatorProcess
from lib.tap_cube_setup import discover_catalog, sync_argv, tap_cube_executable, write_config

RUN_TIMEOUT = 1800
#: callgrind's line with the instructions of the whole run, and its file's for a thread.
COLLECTED = re.compile(r"Collected : (\d+)")
SUMMARY = re.compile(r"^summary: (\d+)", re.MULTILINE)


def parse_setting(text: str) -> tuple[str, object]:
    """`name=value`, the value read as JSON where it parses (4, false) and as text if not."""
    name, sep, value = text.partition("=")
    if not sep or not name:
        raise argparse.ArgumentTypeError(f"{text!r}: expected name=value")
    try:
        return name, json.loads(value)
    except json.JSONDecodeError:
        return name, value


def last_state(output: Path) -> dict[str, object]:
    """The value of the last STATE message in a tap's `output`."""
    state: dict[str, object] | None = None
    with output.open() as lines:
        for line in lines:
            if '"type":"STATE"' in line or '"type": "STATE"' in line:
                state = json.loads(line)["value"]
    if state is None:
        sys.exit(f"{output}: the run wrote no STATE")
    return state


class Build:
    """One build's tap-cube, config, catalog and state."""

    def __init__(self, name: str, tap: Path, workdir: Path) -> None:
        self.name, self.tap, self.workdir = name, tap, workdir
        self.config = workdir / f"{name}-config.json"
        self.catalog = workdir / f"{name}-catalog.json"
        self.state: Path | None = None
        self.samples: list[Sample] = []

    def prepare(self, url: str, settings: dict[str, object], *, first: bool) -> None:
        write_config(self.config, url, ASSIGNMENT_IDS, skip_unchanged=True, **settings)
        discover_catalog(self.tap, self.config, self.catalog)
        if first:
            return
        output = self.workdir / f"{self.name}-first.jsonl"
        argv = sync_argv(self.tap, self.config, self.catalog)
        with output.open("wb") as out, (self.workdir / f"{self.name}.log").open("wb") as err:
            # Untimed; its output is read for the state it leaves.
            done = subprocess.run(argv, stdout=out, stderr=err, env=base_env(), check=False)  # noqa: S603
        if done.returncode != 0:
            sys.exit(f"{self.name}: tap-cube exited {done.returncode}; see {self.workdir}")
        self.state = self.workdir / f"{self.name}-state.json"
        self.state.write_text(json.dumps(last_state(output)))
        output.unlink()

    def run(self, server_pid: int | None) -> Sample:
        sample = measure(
            sync_argv(self.tap, self.config, self.catalog, self.state),
            read=None,
            timeout=RUN_TIMEOUT,
            log=self.workdir / f"{self.name}.log",
            env=base_env(),
            server_pid=server_pid,
        )
        if sample.returncode != 0:
            sys.exit(f"{self.name}: tap-cube exited {sample.returncode}; see {self.workdir}")
        return sample

    def count_instructions(self) -> tuple[int, int]:
        """One run under callgrind: the instructions of every thread, and of the main one."""
        out = self.workdir / f"{self.name}.callgrind"
        argv = [
            "valgrind",
            "--tool=callgrind",
            "--separate-threads=yes",
            f"--callgrind-out-file={out}",
            *sync_argv(self.tap, self.config, self.catalog, self.state),
        ]
        log = self.workdir / f"{self.name}.log"
        with log.open("wb") as err:
            done = subprocess.run(  # noqa: S603  # argv built here
                argv, stdout=subprocess.DEVNULL, stderr=err, env=base_env(), check=False
            )
        collected = COLLECTED.search(log.read_text(errors="replace"))
        main_thread = SUMMARY.search(Path(f"{out}-01").read_text(errors="replace"))
        if done.returncode != 0 or collected is None or main_thread is None:
            sys.exit(f"{self.name}: the run under callgrind failed; see {log}")
        return int(collected.group(1)), int(main_thread.group(1))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("other", type=Path, help="a checkout of another build, synced")
    parser.add_argument("--customers", type=int, default=125_000, help="per assignment")
    parser.add_argument("--rounds", type=int, default=4)
    parser.add_argument("--first", action="store_true", help="time first runs, not re-runs")
    parser.add_argument("--set", type=parse_setting, action="append", default=[])
    parser.add_argument(
        "--instructions", action="store_true", help="count instructions under callgrind instead"
    )
    args = parser.parse_args()
    if args.instructions and shutil.which("valgrind") is None:
        sys.exit("--instructions needs valgrind (Debian: apt install valgrind)")
    other_tap = args.other.resolve() / ".venv" / "bin" / "tap-cube"
    if not other_tap.exists():
        sys.exit(f"{other_tap} not found: run `uv sync --frozen` in {args.other} first")
    settings = dict(args.set)
    workdir = Path(tempfile.mkdtemp(prefix="compare-builds-"))  # kept if a run fails
    builds = (Build("this", tap_cube_executable(), workdir), Build("other", other_tap, workdir))
    with SimulatorProcess(args.customers, workdir) as sim:
        for build in builds:
            build.prepare(sim.url, settings, first=args.first)
        if args.instructions:
            report_instructions(builds, args.customers * len(ASSIGNMENT_IDS), args.first)
            shutil.rmtree(workdir)
            return
        for attempt in range(args.rounds):
            for build in builds if attempt % 2 == 0 else builds[::-1]:
                sample = build.run(sim.pid)
                build.samples.append(sample)
                progress(
                    f"round {attempt + 1} of {args.rounds}: {build.name}: wall "
                    f"{sample.wall:.2f} s, CPU {sample.cpu:.2f} s, others' CPU "
                    f"{sample.other_cpu:.1f} s"
                )
    shutil.rmtree(workdir)
    customers = args.customers * len(ASSIGNMENT_IDS)
    kind = "first runs" if args.first else "re-runs of an unchanged table"
    print(f"{customers:,} customers, {kind}, settings {settings or 'as defaults'}")
    for build in builds:
        walls = [s.wall for s in build.samples]
        cpus = [s.cpu for s in build.samples]
        print(
            f"{build.name:5}  wall median {statistics.median(walls):.2f} s "
            f"({min(walls):.2f}-{max(walls):.2f}), CPU median {statistics.median(cpus):.2f} s "
            f"({min(cpus):.2f}-{max(cpus):.2f})"
        )


def report_instructions(builds: tuple[Build, ...], customers: int, first: bool) -> None:
    counts = {build.name: build.count_instructions() for build in builds}
    kind = "first runs" if first else "re-runs of an unchanged table"
    print(f"{customers:,} customers, {kind}, instructions under callgrind (billions)")
    for name, (whole, main_thread) in counts.items():
        print(
            f"{name:5}  whole run {whole / 1e9:.3f}, main thread {main_thread / 1e9:.3f} "
            f"({whole / customers:,.0f} a record, start-up included)"
        )


if __name__ == "__main__":
    main()
