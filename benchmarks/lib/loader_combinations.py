"""Other loader settings in benchmarks/end_to_end.py: `meltano run` with each combination
(--combinations), and target-postgres alone on the tap's saved output (--loader-alone).
"""

from __future__ import annotations

import json
import statistics
import subprocess
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from lib.common import STREAM, base_env, progress
from lib.meltano_plugins import plugin_executable
from lib.pipelines import Pipeline, Timing, meltano_pipeline, simulator, time_pipeline
from lib.postgres import SCHEMA, Postgres, count_rows
from lib.tap_cube_setup import discover_catalog, sync_argv, write_config

if TYPE_CHECKING:
    from pathlib import Path


#: Loader settings tried by --combinations: the loader's defaults spelled out, each
#: change alone, and together with growing batches (meltano.yml's choice among them).
COMBINATIONS: tuple[dict[str, str], ...] = (
    {"use_copy": "false", "validate_records": "true", "batch_size_rows": "10000"},
    {"use_copy": "true", "validate_records": "true", "batch_size_rows": "10000"},
    {"use_copy": "false", "validate_records": "false", "batch_size_rows": "10000"},
    {"use_copy": "true", "validate_records": "false", "batch_size_rows": "10000"},
    {"use_copy": "true", "validate_records": "false", "batch_size_rows": "50000"},
    {"use_copy": "true", "validate_records": "false", "batch_size_rows": "100000"},
)


@dataclass
class CombinationCost:
    settings: dict[str, str]
    rows: list[int] = field(default_factory=list)
    timings: list[Timing] = field(default_factory=list)

    def add(self, timing: Timing, rows: int, round_label: str) -> None:
        """Keep one run's figures, and say them."""
        self.rows.append(rows)
        self.timings.append(timing)
        shown = ", ".join(f"{k}={v}" for k, v in self.settings.items())
        progress(f"{round_label} {shown}: {timing.wall:.2f} s, {rows:,} rows")

    @property
    def wall(self) -> float:
        return statistics.median(t.wall for t in self.timings)

    @property
    def loader_peak_mib(self) -> float | None:
        """The loader's own peak RSS, when sampled (--profile)."""
        peaks = [t.peak_mib_by_process.get("target-postgres") for t in self.timings]
        found = [peak for peak in peaks if peak is not None]
        return max(found) if found else None


def run_combinations(
    pg: Postgres,
    workdir: Path,
    *,
    per_assignment: int,
    repeat: int,
    timeout: float,
    profile: bool,
) -> list[CombinationCost]:
    """`meltano run` (customers only) with each combination of loader settings."""
    costs = [CombinationCost(settings) for settings in COMBINATIONS]
    for attempt in range(repeat):
        for number, cost in enumerate(costs, 1):
            database = pg.create()
            try:
                with simulator(per_assignment) as sim:
                    pipeline = meltano_pipeline(sim, pg, database, cost.settings)
                    log = workdir / f"combination-{number}-{attempt + 1}.log"
                    timing = time_pipeline(pipeline, log, timeout=timeout, profile=profile)
                rows = count_rows(pg, database, STREAM)
            finally:
                pg.drop(database)
            cost.add(timing, rows, f"round {attempt + 1} of {repeat}: combination")
    return costs


def run_loader_alone(
    pg: Postgres,
    workdir: Path,
    *,
    per_assignment: int,
    repeat: int,
    timeout: float,
    profile: bool,
) -> list[CombinationCost]:
    """target-postgres alone, reading the tap's output from a file, with each combination.

    Without Meltano and the tap competing for the CPUs, what a setting saves the loader
    stands out of the noise of a shared machine.
    """
    output = workdir / "tap-output.jsonl"
    tap = plugin_executable("extractors", "tap-cube")
    with simulator(per_assignment) as sim:
        tap_config = write_config(workdir / "tap-config.json", sim.url)
        catalog = discover_catalog(tap, tap_config, workdir / "catalog.json")
        with output.open("wb") as out:
            subprocess.run(  # noqa: S603  # argv built here
                sync_argv(tap, tap_config, catalog),
                env=base_env(),
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.DEVNULL,
                check=True,
            )
    target = plugin_executable("loaders", "target-postgres")
    costs = [CombinationCost(settings) for settings in COMBINATIONS]
    for attempt in range(repeat):
        for number, cost in enumerate(costs, 1):
            database = pg.create()
            try:
                config = pg.loader_config(database)
                config["default_target_schema"] = SCHEMA
                config["use_copy"] = cost.settings["use_copy"] == "true"
                config["validate_records"] = cost.settings["validate_records"] == "true"
                config["batch_size_rows"] = int(cost.settings["batch_size_rows"])
                target_config = workdir / "loader-alone-config.json"
                target_config.write_text(json.dumps(config))
                argv = ["bash", "-c", '"$0" --config "$1" < "$2"', str(target)]
                argv += [str(target_config), str(output)]
                log = workdir / f"loader-alone-{number}-{attempt + 1}.log"
                pipeline = Pipeline("loader alone", argv, base_env(), SCHEMA)
                timing = time_pipeline(pipeline, log, timeout=timeout, profile=profile)
                # The loader is the largest process here (beside a shell).
                timing.peak_mib_by_process.setdefault("target-postgres", timing.peak_rss_kib / 1024)
                rows = count_rows(pg, database, STREAM)
            finally:
                pg.drop(database)
            cost.add(timing, rows, f"round {attempt + 1} of {repeat}: loader alone,")
    return costs
