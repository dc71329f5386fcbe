"""What a STATE written while a partition is read costs, by what customer ids look like.

Run by hand, not in CI, from the project root::

    uv run python benchmarks/checkpoint_cost.py                 # 1,000,000 ids
    uv run python benchmarks/checkpoint_cost.py --ids 100000

A partition of `--ids` customers, all delivered last time and all sent again so far (the
largest such STATE: the ids remembered with those sent, PartitionRead `_checkpoint`).
Printed per id style (see benchmarks/memory_by_id_style.py): the CPU seconds to make its delivered
ids, their bytes in the STATE, the seconds and bytes of the stored record hashes that go
with them while they still vouch (skip_unchanged), and the least interval between two
such STATEs (CHECKPOINT_INTERVAL, or CHECKPOINT_COST_FACTOR times the time one takes).
The median of 3 tries. Nothing is asserted.
"""

from __future__ import annotations

import argparse
import json
import random
import statistics
import time
from array import array

from lib.common import ID_STYLE_NAMES

from cube_simulator.fake_values import ID_STYLES
from tap_cube.records.changes import encode_hashes
from tap_cube.records.completeness import CHECKPOINT_COST_FACTOR, CHECKPOINT_INTERVAL
from tap_cube.records.deletions import delivered_so_far, encode_ids
from tap_cube.records.seen import SeenIds

START = 10_000_000
TRIES = 3


def ids_of(style: str, count: int) -> list[str]:
    write, _ = ID_STYLES[style]
    return [write(START, i) for i in range(count)]


def median_seconds(work: object) -> tuple[float, object]:
    times, result = [], None
    for _ in range(TRIES):
        started = time.process_time()
        result = work()  # type: ignore[operator]
        times.append(time.process_time() - started)
    return statistics.median(times), result


def measure(style: str, count: int) -> dict[str, float]:
    ids = ids_of(style, count)
    with SeenIds() as before:
        for key in ids:
            before.add(key)
        previous = encode_ids(before.small_numbers, before.other_ids())
    with SeenIds() as emitted:
        for key in ids:
            emitted.add(key)
        ids_seconds, delivered = median_seconds(lambda: delivered_so_far(previous, emitted))
    hashes = array("Q", sorted({random.getrandbits(64) for _ in range(count)}))
    hashes_seconds, encoded = median_seconds(lambda: encode_hashes(hashes))
    return {
        "ids s": ids_seconds,
        "ids bytes": len(json.dumps(delivered)),
        "hashes s": hashes_seconds,
        "hashes bytes": len(str(encoded)) + 2,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--ids", type=int, default=1_000_000, help="customers in the partition")
    args = parser.parse_args()
    print(
        "| Ids | delivered ids (CPU s) | delivered ids (bytes) | with hashes (CPU s) "
        "| with hashes (bytes) | least interval (s) |"
    )
    print("|---|---:|---:|---:|---:|---:|")
    for style in ID_STYLE_NAMES:
        row = measure(style, args.ids)
        worst = row["ids s"] + row["hashes s"]
        interval = max(CHECKPOINT_INTERVAL, CHECKPOINT_COST_FACTOR * worst)
        print(
            f"| {style} | {row['ids s']:.2f} | {int(row['ids bytes']):,} | "
            f"{worst:.2f} | {int(row['ids bytes'] + row['hashes bytes']):,} | {interval:.0f} |"
        )


if __name__ == "__main__":
    main()
