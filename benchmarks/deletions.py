"""What detect_deletions costs: state size and run time, by what customer ids look like.

Run by hand, not in CI, from the project root::

    uv run python benchmarks/deletions.py                 # 1,000,000 customers
    uv run python benchmarks/deletions.py --customers 100000

For each id style (see benchmarks/id_memory.py), a fresh simulator serves 4 assignments
and tap-cube syncs `customers` alone: once with detect_deletions off, once on (the first
run, which only records the ids), and once on with the state of that run against a
simulator whose assignments each lost their last 1,000 customers (the run that emits the
deletion records). Printed: wall time and peak RSS of each run, the size of the final
STATE message, and the deletion records emitted. Nothing is asserted.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import sysconfig
import tempfile
import time
from pathlib import Path

from id_memory import ASSIGNMENTS, STYLES, TOKEN, start_simulator
from tap_cube_setup import discover_catalog

REMOVED_PER_ASSIGNMENT = 1_000


def run_tap(config: Path, catalog: Path, state: Path | None) -> tuple[float, float, bytes]:
    """Wall seconds, peak RSS (MiB) and stdout of one tap-cube run."""
    tap = Path(sysconfig.get_path("scripts")) / "tap-cube"
    argv = [str(tap), "--config", str(config), "--catalog", str(catalog)]
    if state is not None:
        argv += ["--state", str(state)]
    started = time.monotonic()
    process = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)  # noqa: S603
    assert process.stdout is not None
    # Only what is counted is kept: a million records would be most of a gigabyte.
    kept = []
    for line in process.stdout:
        if b'"_sdc_deleted_at":"' in line or line.startswith(b'{"type":"STATE"'):
            kept.append(line)
    output = b"".join(kept)
    _, status, usage = os.wait4(process.pid, 0)
    if status != 0:
        sys.exit(f"tap-cube failed (status {status})")
    return time.monotonic() - started, usage.ru_maxrss / 1024, output


def last_state(output: bytes) -> bytes:
    lines = [line for line in output.splitlines() if line.startswith(b'{"type":"STATE"')]
    return lines[-1]


def measure(style: str, per_assignment: int, workdir: Path) -> dict[str, object]:
    row: dict[str, object] = {"ids": style}
    config = workdir / "config.json"
    for phase, count, detect in (
        ("off", per_assignment, False),
        ("first", per_assignment, True),
        ("deleting", per_assignment - REMOVED_PER_ASSIGNMENT, True),
    ):
        simulator, url = start_simulator(style, count, workdir)
        try:
            settings = {"api_url": url, "auth_token": TOKEN, "assignment_ids": list(ASSIGNMENTS)}
            config.write_text(json.dumps({**settings, "detect_deletions": detect}))
            catalog = discover_catalog(
                Path(sysconfig.get_path("scripts")) / "tap-cube", config, workdir / "catalog.json"
            )
            state = workdir / "state.json" if phase == "deleting" else None
            wall, peak, output = run_tap(config, catalog, state)
        finally:
            simulator.terminate()
            simulator.wait()
        row[f"{phase} s"] = wall
        row[f"{phase} MiB"] = peak
        if phase == "first":
            message = last_state(output)
            row["state bytes"] = len(message)
            (workdir / "state.json").write_bytes(json.dumps(json.loads(message)["value"]).encode())
        if phase == "deleting":
            row["deleted"] = output.count(b'"_sdc_deleted_at":"')
    return row


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--customers", type=int, default=1_000_000, help="in all, per style")
    args = parser.parse_args()
    per_assignment = args.customers // len(ASSIGNMENTS)
    with tempfile.TemporaryDirectory() as directory:
        rows = [measure(style, per_assignment, Path(directory)) for style in STYLES]
    print(
        "| Ids | off (s) | on, first run (s) | on, deleting (s) | Peak RSS off / on (MiB) "
        "| STATE message | Deletion records |"
    )
    print("|---|---:|---:|---:|---:|---:|---:|")
    for row in rows:
        print(
            f"| {row['ids']} | {row['off s']:.2f} | {row['first s']:.2f} | "
            f"{row['deleting s']:.2f} | {row['off MiB']:.0f} / {row['deleting MiB']:.0f} | "
            f"{int(str(row['state bytes'])):,} bytes | {row['deleted']:,} |"
        )


if __name__ == "__main__":
    main()
