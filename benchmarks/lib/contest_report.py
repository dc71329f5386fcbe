"""The Markdown report of benchmarks/tap_vs_others.py: a table per scenario, tap-cube's
memory against the number of customers, and the targets the project aims at with whether
this run met them; nothing is asserted.
"""

from __future__ import annotations

import platform
from dataclasses import dataclass
from typing import TYPE_CHECKING

from lib.common import CLEARED_ENV, STREAM
from lib.contenders import CONCURRENCY, MSDK, TAP_CUBE
from lib.machine import BUSY_MACHINE, cpu_count, cpu_model, version_of
from lib.simulator_process import PAGE_SIZE

if TYPE_CHECKING:
    from lib.contenders import Scenario
    from lib.contest_runs import Run

# Targets the project aims at.
TARGET_RATE = 100_000.0  # (a) records/s
TARGET_VS_MSDK_A = 4.0  # (a) tap-cube records/s over msdk's
TARGET_VS_MSDK_B = 3.5  # (b) msdk wall time over tap-cube's
TARGET_VS_IDEAL = 1.5  # (b) tap-cube wall time over the ideal
TARGET_MEMORY = 1.2  # peak RSS at 1M customers over peak RSS at 100k


def yes(met: bool) -> str:
    return "yes" if met else "**no**"


def records_cell(run: Run) -> str:
    if run.returncode != 0:
        return f"failed (exit {run.returncode})"
    if run.records is None:
        return f"{run.scenario.total:,} (not counted)"
    if run.records != run.scenario.total:
        return f"**{run.records:,} of {run.scenario.total:,}**"
    return f"{run.records:,}"


def contender_table(results: dict[str, Run], scenario: Scenario) -> list[str]:
    cube = results.get(TAP_CUBE)
    lines = [
        "| Contender | Records | Wall (s) | Records/s | CPU (s) | Peak RSS (MiB) "
        "| tap-cube speed-up |",
        "|---|---:|---:|---:|---:|---:|---:|",
    ]
    for name, run in results.items():
        speedup = "-" if cube is None or name == TAP_CUBE else f"{cube.rate / run.rate:.1f}x"
        lines.append(
            f"| {name} | {records_cell(run)} | {run.wall:.2f} | {run.rate:,.0f} | "
            f"{run.cpu:.1f} | {run.peak_mib:.0f} | {speedup} |"
        )
    if scenario.latency and cube is not None:
        ideal = scenario.ideal_seconds
        lines.append(
            f"| ideal: {scenario.pages} pages x {scenario.latency:g} s / {CONCURRENCY} "
            f"concurrent | | {ideal:.2f} | {scenario.total / ideal:,.0f} | | | "
            f"tap-cube at {cube.wall / ideal:.2f}x ideal |"
        )
    return lines


@dataclass(frozen=True)
class Results:
    a: dict[str, Run]
    b: dict[str, Run]
    small: Run
    large: Run


def targets(results: Results) -> list[tuple[str, str, bool]]:
    rows: list[tuple[str, str, bool]] = []
    a_cube, a_msdk = results.a.get(TAP_CUBE), results.a.get(MSDK)
    if a_cube is not None:
        rows.append(
            (
                f"(a) tap-cube >= {TARGET_RATE:,.0f} records/s",
                f"{a_cube.rate:,.0f} records/s",
                a_cube.complete and a_cube.rate >= TARGET_RATE,
            )
        )
        if a_msdk is not None:
            ratio = a_cube.rate / a_msdk.rate
            rows.append(
                (
                    f"(a) tap-cube >= {TARGET_VS_MSDK_A:g}x tap-rest-api-msdk",
                    f"{ratio:.1f}x",
                    a_cube.complete and a_msdk.complete and ratio >= TARGET_VS_MSDK_A,
                )
            )
    b_cube, b_msdk = results.b.get(TAP_CUBE), results.b.get(MSDK)
    if b_cube is not None:
        if b_msdk is not None:
            ratio = b_msdk.wall / b_cube.wall
            rows.append(
                (
                    f"(b) tap-cube >= {TARGET_VS_MSDK_B:g}x faster than tap-rest-api-msdk",
                    f"{ratio:.1f}x",
                    b_cube.complete and b_msdk.complete and ratio >= TARGET_VS_MSDK_B,
                )
            )
        ideal = b_cube.scenario.ideal_seconds
        rows.append(
            (
                f"(b) tap-cube within {TARGET_VS_IDEAL:g}x of ideal ({ideal:.2f} s)",
                f"{b_cube.wall / ideal:.2f}x ({b_cube.wall:.2f} s)",
                b_cube.complete and b_cube.wall <= TARGET_VS_IDEAL * ideal,
            )
        )
    growth = results.large.peak_rss_kib / results.small.peak_rss_kib
    rows.append(
        (
            f"peak RSS at {results.large.scenario.total:,} <= {TARGET_MEMORY:g}x at "
            f"{results.small.scenario.total:,} customers",
            f"{growth:.2f}x ({results.large.peak_mib:.0f} vs {results.small.peak_mib:.0f} MiB)",
            results.small.complete and results.large.complete and growth <= TARGET_MEMORY,
        )
    )
    return rows


def report(
    results: Results,
    *,
    command: str,
    msdk: tuple[str, str],
    repeat: int,
    count: bool,
    elapsed: float,
    source: str,
    source_changed: bool,
) -> str:
    a, b = results.a[TAP_CUBE].scenario, results.b[TAP_CUBE].scenario
    small, large = results.small, results.large
    out = ["## Benchmark", ""]
    runs = [*results.a.values(), *results.b.values(), small, large]
    busiest = max(runs, key=lambda run: run.other_load)
    if busiest.other_load > BUSY_MACHINE:
        out += [
            f"**Other processes used up to {busiest.other_load:.0%} of the machine's CPU "
            f"during a run ({busiest.contender}, {busiest.scenario.title}): the figures are "
            "not those of a quiet machine. Run it again when nothing else runs.**",
            "",
        ]
    if source_changed:
        out += [
            "**tap_cube/ changed while the benchmark ran: its figures may mix versions. "
            "Run it again.**",
            "",
        ]
    out += [
        f"- Machine: {cpu_count()} CPUs (nproc), {cpu_model()}, {platform.system()} "
        f"{platform.release()}, Python {platform.python_version()}",
        f"- Versions: tap-cube {version_of('tap-cube')} at {source} (singer-sdk "
        f"{version_of('singer-sdk')}), tap-rest-api-msdk {msdk[0]} (singer-sdk {msdk[1]}), "
        f"requests {version_of('requests')}",
        f"- Command: `{command}` ({repeat} run(s) per figure, median wall time; "
        f"{'records counted from stdout' if count else 'stdout to /dev/null, not counted'}; "
        f"benchmark took {elapsed:.0f} s)",
        "- Server: the project's Cube simulator (`python -m cube_simulator "
        f"--next-style same --page-size {PAGE_SIZE}`), a fresh process per run, on the same "
        "machine",
        "",
        f"### {a.title}: {a.describe()}",
        "",
        *contender_table(results.a, a),
        "",
        f"### {b.title}: {b.describe()}",
        "",
        *contender_table(results.b, b),
        "",
        "### tap-cube's memory against the number of customers (no latency)",
        "",
        "| Customers | Records | Wall (s) | Records/s | CPU (s) | Peak RSS (MiB) |",
        "|---:|---:|---:|---:|---:|---:|",
    ]
    for run in (small, large):
        out.append(
            f"| {run.scenario.total:,} | {records_cell(run)} | {run.wall:.2f} | "
            f"{run.rate:,.0f} | {run.cpu:.1f} | {run.peak_mib:.0f} |"
        )
    out += [
        "",
        f"Peak RSS at {large.scenario.total:,} customers is "
        f"{large.peak_rss_kib / small.peak_rss_kib:.2f}x that at {small.scenario.total:,}.",
        "",
        "### Targets",
        "",
        "| Target | Measured | Met |",
        "|---|---|---|",
    ]
    out += [f"| {target} | {measured} | {yes(met)} |" for target, measured, met in targets(results)]
    out += [
        "",
        "Notes:",
        "",
        "- Wall time runs from process start to exit, interpreter start-up included.",
        f"- tap-cube syncs only `{STREAM}`, selected in a catalog from an untimed "
        "`--discover` run (as Meltano runs it), so its timed run makes no discovery "
        "requests; tap-rest-api-msdk infers its schema from each stream's first page, one "
        "request per stream, within its timed run.",
        "- Peak RSS and CPU (user + system) are each contender's own (`wait4` rusage), "
        "not the simulator's, which runs on the same machine.",
        f"- Other processes (neither a contender, the simulator nor this script) used at "
        f"most {busiest.other_load:.0%} of the machine's CPU during any run (from "
        "/proc/stat).",
        f"- Contenders run with {', '.join(CLEARED_ENV)} cleared (Python's defaults), "
        "after one untimed warm-up run each, so bytecode is cached.",
        "- The simulator's next links point at the simulator (`--next-style same`) for all "
        "three. The real service's links may name an internal proxy host and `http://`: a "
        "client that follows them as given, like the naive loop, then fails or sends its "
        "token elsewhere, which tap-cube never does (it takes only the query). "
        "tap-rest-api-msdk with `hateoas_body` also requests only the link's path and query "
        "on its own api_url.",
        "- The naive loop and tap-rest-api-msdk request one page at a time; tap-cube "
        f"keeps up to {CONCURRENCY} requests in flight.",
    ]
    return "\n".join(out)
