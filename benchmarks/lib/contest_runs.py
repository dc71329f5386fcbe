"""The runs of benchmarks/tap_vs_others.py: each contender against a fresh simulator,
repeated, the median kept, after one untimed warm-up run of each.

Each contender runs once, untimed, before the timed runs, so that no timed run compiles
bytecode. Consecutive runs of the same thing vary by about 10% on a 2-CPU machine; for
figures to publish, take the median of a few (`--repeat 3`).
"""

from __future__ import annotations

import statistics
import sys
from dataclasses import dataclass
from typing import TYPE_CHECKING

from lib.common import child_env, progress, tail_lines
from lib.contenders import CONTENDERS, Scenario
from lib.machine import cpu_count, wait_for_quiet
from lib.measurement import counting, measure
from lib.simulator_process import SimulatorProcess

if TYPE_CHECKING:
    from collections.abc import Sequence
    from pathlib import Path

    from lib.contenders import Contender


@dataclass(frozen=True)
class Run:
    contender: str
    scenario: Scenario
    wall: float
    records: int | None  # None when output was not counted
    peak_rss_kib: int
    returncode: int
    log: Path
    cpu: float  # the contender's user + system CPU seconds
    other_cpu: float  # CPU seconds other processes on the machine used meanwhile

    @property
    def complete(self) -> bool:
        return self.returncode == 0 and (
            self.records is None or self.records == self.scenario.total
        )

    @property
    def delivered(self) -> int:
        return self.scenario.total if self.records is None else self.records

    @property
    def rate(self) -> float:
        return self.delivered / self.wall

    @property
    def peak_mib(self) -> float:
        return self.peak_rss_kib / 1024

    @property
    def other_load(self) -> float:
        """The share of the machine's CPU capacity that other processes used meanwhile."""
        return max(0.0, self.other_cpu) / (self.wall * cpu_count())


def run_once(
    contender: Contender,
    scenario: Scenario,
    workdir: Path,
    *,
    count: bool,
    timeout: float,
    wait_quiet: float = 0.0,
    quiet: bool = False,
) -> Run:
    if wait_quiet > 0:
        wait_for_quiet(wait_quiet)
    with SimulatorProcess(scenario.per_assignment, workdir, latency=scenario.latency) as sim:
        argv = contender.command(sim.url, scenario, workdir)
        log = workdir / f"{scenario.key}-{contender.name.replace(' ', '-')}.log"
        sample = measure(
            argv,
            read=counting(contender.mark) if count else None,
            timeout=timeout,
            log=log,
            env=child_env(),
            server_pid=sim.pid,
        )
    run = Run(
        contender.name,
        scenario,
        sample.wall,
        sample.records,
        sample.peak_rss_kib,
        sample.returncode,
        log,
        sample.cpu,
        sample.other_cpu,
    )
    counted = "not counted" if run.records is None else f"{run.records:,} records"
    if quiet and run.complete:
        return run
    progress(
        f"  {contender.name}: {run.wall:.2f} s, {counted}, {run.rate:,.0f} records/s, "
        f"CPU {run.cpu:.1f} s, peak RSS {run.peak_mib:.0f} MiB, exit {run.returncode}, "
        f"other processes {run.other_load:.0%} of the machine"
    )
    if not run.complete:
        progress(f"  {contender.name}: INCOMPLETE run; last lines of {log}:")
        for line in tail_lines(log, 8):
            progress(f"    {line}")
    return run


def median_run(runs: list[Run]) -> Run:
    """The run with the median wall time; peak memory is the highest of all runs."""
    ordered = sorted(runs, key=lambda r: r.wall)
    middle = ordered[(len(ordered) - 1) // 2]
    if all(r.complete for r in runs):
        return Run(
            middle.contender,
            middle.scenario,
            statistics.median(r.wall for r in runs),
            middle.records,
            max(r.peak_rss_kib for r in runs),
            middle.returncode,
            middle.log,
            statistics.median(r.cpu for r in runs),
            max(r.other_cpu for r in runs),
        )
    return next(r for r in runs if not r.complete)


def run_scenario(
    scenario: Scenario,
    contenders: Sequence[Contender],
    workdir: Path,
    *,
    repeat: int,
    count: bool,
    timeout: float,
    wait_quiet: float,
) -> dict[str, Run]:
    progress(f"{scenario.title}: {scenario.describe()}")
    runs: dict[str, list[Run]] = {c.name: [] for c in contenders}
    for attempt in range(repeat):
        if repeat > 1:
            progress(f" round {attempt + 1} of {repeat}")
        for contender in contenders:
            runs[contender.name].append(
                run_once(
                    contender,
                    scenario,
                    workdir,
                    count=count,
                    timeout=timeout,
                    wait_quiet=wait_quiet,
                )
            )
    return {name: median_run(done) for name, done in runs.items()}


def warm_up(workdir: Path, *, timeout: float) -> None:
    """Run each contender once on a few records, untimed.

    Bytecode of everything it imports, lazily or not, is then cached, so no timed run
    compiles it; and a contender that cannot run at all is found before the long runs.
    """
    scenario = Scenario("warm-up", "warm-up", 10)
    progress("warm-up: one untimed run of each contender on 40 records")
    for contender in CONTENDERS:
        run = run_once(contender, scenario, workdir, count=True, timeout=timeout, quiet=True)
        if not run.complete:
            sys.exit(f"{contender.name} failed its warm-up run; see {run.log}")
