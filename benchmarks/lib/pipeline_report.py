"""The Markdown reports of the pipelines into PostgreSQL: the lines on the machine and
versions that each opens with, and benchmarks/end_to_end.py's: both pipelines side by
side against the target, each process's CPU and memory (--profile), and the tables of
--per-stream, --combinations and --loader-alone.
"""

from __future__ import annotations

import platform
from typing import TYPE_CHECKING

from lib.common import ASSIGNMENT_IDS
from lib.machine import cpu_count, cpu_model, source_state, version_of
from lib.meltano_plugins import describe_settings, plugin_version
from lib.pipelines import MELTANO_RUN, PIPE

if TYPE_CHECKING:
    from lib.loader_combinations import CombinationCost
    from lib.pipeline_rounds import Outcome, StreamCost

TARGET_RATIO = 2.5  # the pipe's wall time over meltano run's


def machine_line(server_version: str) -> str:
    return (
        f"- Machine: {cpu_count()} CPUs, {cpu_model()}, Linux {platform.release()}, "
        f"Python {platform.python_version()}, PostgreSQL {server_version} on the same machine"
    )


def versions_line() -> str:
    """tap-cube's, Meltano's and the loader's versions, and the commit measured."""
    return (
        f"- Versions: tap-cube {version_of('tap-cube')} at {source_state()}, "
        f"meltano {version_of('meltano')}, meltanolabs-target-postgres "
        f"{plugin_version('loaders', 'target-postgres', 'meltanolabs-target-postgres')}"
    )


def report(
    outcomes: dict[str, Outcome],
    *,
    total: int,
    per_assignment: int,
    settings: dict[str, object],
    repeat: int,
    command: str,
    elapsed: float,
    server_version: str,
) -> str:
    melt, pipe = outcomes[MELTANO_RUN], outcomes[PIPE]
    ratio = pipe.wall / melt.wall
    met = "met" if ratio >= TARGET_RATIO else "**not met**"
    load = melt.loads[0]
    lines = [
        f"#### End to end: {total:,} customers into PostgreSQL",
        "",
        machine_line(server_version),
        f"{versions_line()} "
        f"(singer-sdk {plugin_version('loaders', 'target-postgres', 'singer-sdk')})",
        f"- Command: `{command}` ({repeat} run(s) per pipeline, median wall time; "
        f"the benchmark took {elapsed:.0f} s)",
        f"- Data: {len(ASSIGNMENT_IDS)} assignments x {per_assignment:,} customers with "
        "text, integer, date and boolean custom fields, from the project's simulator "
        "(no latency); only the `customers` stream",
        "",
        "| Pipeline | Loader settings | Rows loaded | Wall (s) | Rows/s | CPU (s) "
        "| Peak RSS (MiB) |",
        "|---|---|---:|---:|---:|---:|---:|",
    ]
    rows = (
        (melt, "`meltano run tap-cube target-postgres`", describe_settings(settings)),
        (pipe, "`tap-cube \\| target-postgres`", "the loader's defaults"),
    )
    for outcome, title, loader in rows:
        lines.append(
            f"| {title} | {loader} | {outcome.loads[0].rows:,} | {outcome.wall:.2f} | "
            f"{total / outcome.wall:,.0f} | {outcome.cpu:.1f} | {outcome.peak_mib:.0f} |"
        )
    lines += [
        "",
        f"`meltano run` is **{ratio:.2f}x** as fast as the pipe with the loader's defaults "
        f"(target: {TARGET_RATIO}x, {met}).",
        "",
        "Notes:",
        "",
        f"- Wall times of every run (s): {MELTANO_RUN}: "
        + ", ".join(f"{t.wall:.2f}" for t in melt.timings)
        + f"; {PIPE}: "
        + ", ".join(f"{t.wall:.2f}" for t in pipe.timings)
        + ".",
        f"- Both loaded the same {load.rows:,} rows: {len(load.columns)} customer columns "
        f"with the same types, the same checksum over them (md5 {load.checksum}), every "
        "row with `_sdc_extracted_at` and `_sdc_batched_at`.",
        "- `meltano run` includes Meltano's start-up and its discovery run; the pipe's "
        "catalog was made by an untimed `--discover` beforehand.",
        "- CPU is the pipeline's own processes (Meltano, tap, loader), not PostgreSQL's; "
        "peak RSS is that of its largest process.",
    ]
    by_process = {name: o.cpu_by_process() for name, o in outcomes.items()}
    peaks = {name: o.peak_mib_by_process() for name, o in outcomes.items()}
    if any(by_process.values()):
        kinds = sorted({kind for found in by_process.values() for kind in found if kind != "bash"})
        lines += [
            "",
            "#### Where the time goes: each process's CPU seconds (median) and peak RSS",
            "",
            f"| Process | CPU (s), {MELTANO_RUN} | CPU (s), {PIPE} "
            f"| Peak RSS (MiB), {MELTANO_RUN} | Peak RSS (MiB), {PIPE} |",
            "|---|---:|---:|---:|---:|",
        ]
        for kind in kinds:
            cpu = [f"{by_process[name].get(kind, 0.0):.1f}" for name in (MELTANO_RUN, PIPE)]
            rss = [
                f"{peaks[name][kind]:.0f}" if kind in peaks[name] else "-"
                for name in (MELTANO_RUN, PIPE)
            ]
            lines.append(f"| {kind} | {' | '.join(cpu + rss)} |")
        lines += [
            "",
            "Sampled from /proc every 0.1 s; a kind's CPU adds up all its processes (tap-cube "
            "runs twice under Meltano: discovery, then the sync). PostgreSQL's figure counts "
            "every session on the server during the run, other users' included.",
        ]
    return "\n".join(lines)


def per_stream_table(costs: list[StreamCost]) -> list[str]:
    lines = [
        "#### `meltano run` per stream (the streams the `cube` environment loads)",
        "",
        "| Streams selected | Rows loaded | Wall (s) |",
        "|---|---:|---:|",
    ]
    for cost in costs:
        rows = ", ".join(f"{table} {count:,}" for table, count in cost.rows.items())
        lines.append(f"| {cost.streams} | {rows} | {cost.wall:.2f} |")
    return lines


def combinations_table(costs: list[CombinationCost], title: str) -> list[str]:
    lines = [
        f"#### {title} with other loader settings (median wall time)",
        "",
        "| use_copy | validate_records | batch_size_rows | Rows loaded | Wall (s) "
        "| Wall of every run (s) | Loader's peak RSS (MiB) |",
        "|---|---|---:|---:|---:|---|---:|",
    ]
    for cost in costs:
        s = cost.settings
        peak = cost.loader_peak_mib
        lines.append(
            f"| {s['use_copy']} | {s['validate_records']} | {int(s['batch_size_rows']):,} "
            f"| {min(cost.rows):,} | {cost.wall:.2f} "
            f"| {', '.join(f'{t.wall:.1f}' for t in cost.timings)} "
            f"| {'-' if peak is None else f'{peak:.0f}'} |"
        )
    return lines
