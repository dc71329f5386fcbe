"""Pipelines into PostgreSQL, run and checked: two pipelines round by round (their order
alternating from round to round), each into a fresh database, each against a fresh
simulator (end_to_end.py, batch_messages.py); `meltano run` with each stream the `cube`
environment loads (end_to_end.py --per-stream); and whether what they loaded is right.
"""

from __future__ import annotations

import statistics
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from lib.common import progress
from lib.pipelines import CUBE_STREAMS, Pipeline, Timing, meltano_pipeline, simulator, time_pipeline
from lib.postgres import Loaded, Postgres, count_rows, loaded

if TYPE_CHECKING:
    from collections.abc import Callable, Sequence
    from pathlib import Path

    from cube_simulator import CubeSimulator


@dataclass
class Outcome:
    """Every round's timing of one pipeline, and what each run loaded."""

    pipeline: str
    timings: list[Timing] = field(default_factory=list)
    loads: list[Loaded] = field(default_factory=list)

    @property
    def wall(self) -> float:
        return statistics.median(t.wall for t in self.timings)

    @property
    def cpu(self) -> float:
        return statistics.median(t.cpu for t in self.timings)

    @property
    def peak_mib(self) -> float:
        return max(t.peak_rss_kib for t in self.timings) / 1024

    def cpu_by_process(self) -> dict[str, float]:
        kinds = {kind for t in self.timings for kind in t.cpu_by_process}
        return {
            kind: statistics.median(t.cpu_by_process.get(kind, 0.0) for t in self.timings)
            for kind in sorted(kinds)
        }

    def peak_mib_by_process(self) -> dict[str, float]:
        kinds = {kind for t in self.timings for kind in t.peak_mib_by_process}
        return {
            kind: max(t.peak_mib_by_process.get(kind, 0.0) for t in self.timings)
            for kind in sorted(kinds)
        }


@dataclass(frozen=True)
class Contestant:
    """One of the two pipelines a round runs."""

    name: str  # as the report names it
    log_stem: str  # the start of its logs' names
    #: The pipeline against a simulator, into a fresh database.
    make: Callable[[CubeSimulator, str], Pipeline]


def run_rounds(
    pg: Postgres,
    workdir: Path,
    contestants: tuple[Contestant, Contestant],
    *,
    per_assignment: int,
    repeat: int,
    timeout: float,
    profile: bool,
    after_run: Callable[[], None] | None = None,
) -> dict[str, Outcome]:
    """Both pipelines round by round, each into a fresh database against a fresh
    simulator; `after_run` clears what a run left behind."""
    outcomes = {c.name: Outcome(c.name) for c in contestants}
    for attempt in range(repeat):
        # Alternating the order spreads a slow spell of a shared machine over both.
        order = contestants if attempt % 2 == 0 else contestants[::-1]
        for contestant in order:
            database = pg.create()
            try:
                with simulator(per_assignment) as sim:
                    pipeline = contestant.make(sim, database)
                    log = workdir / f"{contestant.log_stem}-{attempt + 1}.log"
                    timing = time_pipeline(pipeline, log, timeout=timeout, profile=profile)
                result = loaded(pg, database, pipeline.schema)
            finally:
                pg.drop(database)
                if after_run is not None:
                    after_run()
            outcomes[contestant.name].timings.append(timing)
            outcomes[contestant.name].loads.append(result)
            progress(
                f"round {attempt + 1} of {repeat}: {contestant.name}: {timing.wall:.2f} s, "
                f"{result.rows:,} rows, CPU {timing.cpu:.1f} s, "
                f"{result.without_metadata:,} without _sdc_ metadata"
            )
    return outcomes


@dataclass(frozen=True)
class StreamCost:
    streams: str  # what was selected
    rows: dict[str, int]  # rows loaded, per table
    wall: float


def run_per_stream(
    pg: Postgres,
    workdir: Path,
    *,
    per_assignment: int,
    overrides: dict[str, str],
    timeout: float,
) -> list[StreamCost]:
    """`meltano run` with each stream the `cube` environment loads alone, then all."""
    costs = []
    selections: list[tuple[str, Sequence[str] | None]] = [(s, [s]) for s in CUBE_STREAMS]
    selections.append(("all (no selection)", None))
    for title, streams in selections:
        database = pg.create()
        try:
            with simulator(per_assignment) as sim:
                pipeline = meltano_pipeline(sim, pg, database, overrides, streams)
                log = workdir / f"per-stream-{title.split()[0]}.log"
                timing = time_pipeline(pipeline, log, timeout=timeout, profile=False)
            rows = {table: count_rows(pg, database, table) for table in streams or CUBE_STREAMS}
        finally:
            pg.drop(database)
        costs.append(StreamCost(title, rows, timing.wall))
        progress(f"per stream: {title}: {timing.wall:.2f} s, {sum(rows.values()):,} rows")
    return costs


def problems(outcomes: dict[str, Outcome], total: int, *, metadata_required: bool) -> list[str]:
    """What is wrong with what the pipelines loaded; empty when all is as it should be.

    Every run must load every customer once, and all runs the same columns and values;
    with `metadata_required`, every row must have its `_sdc_` metadata too.
    """
    found: list[str] = []
    runs = [(o.pipeline, load) for o in outcomes.values() for load in o.loads]
    for name, load in runs:
        if load.rows != total or load.distinct_keys != total:
            found.append(f"{name} loaded {load.rows:,} rows ({load.distinct_keys:,} keys)")
        if metadata_required and load.without_metadata:
            found.append(f"{name}: {load.without_metadata:,} rows lack _sdc_ metadata")
    first_name, first = runs[0]
    for name, load in runs[1:]:
        if load.columns != first.columns:
            found.append(f"{name} and {first_name} loaded different columns or types")
        elif load.checksum != first.checksum:
            found.append(f"{name} and {first_name} loaded different rows")
    return found
