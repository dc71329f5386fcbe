"""The two pipelines of benchmarks/end_to_end.py, their data, and how one is timed
(batch_messages.py and rerun.py run the first with other tap settings).

- `meltano run`: `meltano run tap-cube target-postgres` in the `simulator` environment
  of this project's meltano.yml, i.e. with its loader settings, selecting the
  `customers` stream (`TAP_CUBE__SELECT`). Meltano's discovery run is part of it.
- `pipe, loader defaults`: `tap-cube --catalog ... | target-postgres` with a loader
  config that holds the connection and nothing else. The catalog (customers only) comes
  from an untimed `--discover` run beforehand.

The data: 4 assignments x 50,000 customers with text, integer, date and boolean custom
fields (`""` among them) from the project's Cube simulator, running in this script's
process with no latency. Wall time runs from starting the pipeline to its exit; CPU is
that of the pipeline's processes (PostgreSQL's server processes not included).
"""

from __future__ import annotations

import contextlib
import json
import os
import sys
import uuid
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from cube_simulator import Assignment, CubeSimulator, CustomField
from lib.common import ASSIGNMENT_IDS, STREAM, TOKEN, base_env, tail_lines
from lib.measurement import measure
from lib.meltano_plugins import MELTANO, meltano_env, plugin_executable
from lib.postgres import DEFAULT_SCHEMA, SCHEMA, Postgres
from lib.process_sampler import ProcessSampler
from lib.tap_cube_setup import discover_catalog, write_config

if TYPE_CHECKING:
    from collections.abc import Iterator, Sequence
    from pathlib import Path

#: The streams tap-cube offers when only assignment_ids is set, as in the `cube`
#: environment: a plain `meltano run` loads them all.
CUBE_STREAMS = ("customers", "callflow_customers", "customer_custom_fields", "campaigns")
PER_ASSIGNMENT = 50_000
FIELDS = [
    CustomField(64, "Adresse", "text"),
    CustomField(70, "Antall i husstanden", "integer"),
    CustomField(71, "Fødselsdato", "date"),
    CustomField(72, "Reservert mot telefonsalg", "boolean"),
]

MELTANO_RUN = "meltano run"
PIPE = "pipe, loader defaults"


@contextlib.contextmanager
def simulator(per_assignment: int, id_style: str = "dense") -> Iterator[CubeSimulator]:
    """A fresh simulator for one run, so that no run finds pages rendered by another."""
    sim = CubeSimulator(
        [
            Assignment(a, per_assignment, custom_fields=FIELDS, customer_id_style=id_style)
            for a in ASSIGNMENT_IDS
        ],
        token=TOKEN,
        next_style="same",
    )
    with sim:
        yield sim


@dataclass
class Pipeline:
    name: str
    argv: list[str]
    env: dict[str, str]
    schema: str


def meltano_pipeline(
    sim: CubeSimulator,
    pg: Postgres,
    database: str,
    overrides: dict[str, str],
    streams: Sequence[str] | None = (STREAM,),
    *,
    tap_settings: dict[str, str] | None = None,
    state_id_suffix: str | None = None,
) -> Pipeline:
    """`meltano run` selecting `streams`; None selects nothing, so every stream loads.

    `tap_settings` override meltano.yml's tap-cube settings. Each run starts from a state
    of its own (`--state-id-suffix`), so that it is a first load: with one shared state,
    meltano.yml's skip_unchanged would send nothing on a later run of the same data. Runs
    given the same `state_id_suffix` continue one another's state.
    """
    env = {
        **{f"TAP_CUBE_{k.upper()}": v for k, v in (tap_settings or {}).items()},
        "TAP_CUBE_API_URL": sim.url,
        "TAP_CUBE_ASSIGNMENT_IDS": json.dumps(ASSIGNMENT_IDS),
        **{f"TARGET_POSTGRES_{k.upper()}": v for k, v in pg.connection_settings(database).items()},
        **{f"TARGET_POSTGRES_{k.upper()}": v for k, v in overrides.items()},
    }
    if streams is not None:
        env["TAP_CUBE__SELECT"] = json.dumps([f"{stream}.*" for stream in streams])
    suffix = state_id_suffix or f"first-load-{uuid.uuid4().hex[:12]}"
    argv = [str(MELTANO), "run", "--state-id-suffix", suffix, "tap-cube", "target-postgres"]
    return Pipeline(MELTANO_RUN, argv, meltano_env(env), SCHEMA)


def pipe_pipeline(sim: CubeSimulator, pg: Postgres, database: str, workdir: Path) -> Pipeline:
    tap = plugin_executable("extractors", "tap-cube")
    target = plugin_executable("loaders", "target-postgres")
    tap_config = write_config(workdir / "tap-config.json", sim.url)
    catalog = discover_catalog(tap, tap_config, workdir / "catalog.json")
    target_config = workdir / "target-config.json"
    target_config.write_text(json.dumps(pg.loader_config(database)))
    script = 'set -o pipefail; "$0" --config "$1" --catalog "$2" | "$3" --config "$4"'
    argv = ["bash", "-c", script, str(tap), str(tap_config), str(catalog)]
    argv += [str(target), str(target_config)]
    return Pipeline(PIPE, argv, base_env(), DEFAULT_SCHEMA)


@dataclass
class Timing:
    wall: float
    cpu: float
    peak_rss_kib: int
    #: CPU seconds and peak RSS (MiB) per kind of process, with --profile.
    cpu_by_process: dict[str, float] = field(default_factory=dict)
    peak_mib_by_process: dict[str, float] = field(default_factory=dict)


def time_pipeline(pipeline: Pipeline, log: Path, *, timeout: float, profile: bool) -> Timing:
    # The simulator runs in threads of this process, so every child process of this
    # process is the pipeline's.
    sampler = ProcessSampler(os.getpid()) if profile else None
    if sampler is not None:
        sampler.start()
    try:
        sample = measure(
            pipeline.argv, read=None, timeout=timeout, log=log, env=pipeline.env, server_pid=None
        )
    finally:
        by_process, peaks = sampler.stop() if sampler is not None else ({}, {})
    if sample.returncode != 0:
        sys.exit(
            f"{pipeline.name} failed (exit {sample.returncode}); the last lines of {log}:\n"
            + "\n".join(tail_lines(log, 30))
        )
    return Timing(sample.wall, sample.cpu, sample.peak_rss_kib, by_process, peaks)
