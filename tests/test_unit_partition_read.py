"""PartitionRead on its own: a fake page source, plain record functions, a state dict."""

from __future__ import annotations

import logging
import time
import typing as t
from datetime import UTC, datetime, timedelta

from tap_cube.api.page import Page
from tap_cube.records import deletions
from tap_cube.records.completeness import PartitionList, RecordPath
from tap_cube.records.partition_read import (
    ExtractedRecord,
    PartitionRead,
    ReadPolicy,
    ReadSwitches,
    StateDue,
)

if t.TYPE_CHECKING:
    from collections.abc import Iterator

LOGGER = logging.getLogger("test")
START = datetime(2024, 5, 1, tzinfo=UTC)


def pages(*ids: list[int]) -> list[Page]:
    """DRF pages holding `ids`, linked in order, each arriving a minute after the last."""
    count = sum(len(page) for page in ids)
    return [
        Page(
            {
                "count": count,
                "next": f"?page={n + 2}" if n + 1 < len(ids) else None,
                "results": [{"id": i} for i in page],
            },
            arrived_at=START + timedelta(minutes=n),
        )
        for n, page in enumerate(ids)
    ]


def partition_read(
    served: list[Page], state: dict[str, t.Any], *, detects_deletions: bool = False
) -> PartitionRead:
    def source(again: bool = False) -> Iterator[Page]:
        for page in served:
            # A page takes a while to come: long after the last checkpoint was written.
            time.sleep(0.01)
            yield page

    return PartitionRead(
        state,
        source,
        PartitionList(
            stream_name="customers",
            where="assignment 7",
            logger=LOGGER,
            id_field="id",
            paginated=True,
            progress_interval=3600.0,
        ),
        RecordPath(keyer=lambda: lambda r: r.get("id"), prepare=lambda r: None, fit=lambda r: r),
        ReadPolicy(
            stream_name="customers",
            id_field="id",
            paginated=True,
            partition_setting="assignment_ids",
            optional=False,
            switches=ReadSwitches(
                tracks_deletions=detects_deletions,
                tracks_changes=False,
                detects_deletions=detects_deletions,
                skips_unchanged=False,
            ),
            skips_inaccessible=False,
            max_deletion_share=1.0,
            id_schema={"type": ["integer"]} if detects_deletions else None,
            checkpoint_interval=0.0 if detects_deletions else 3600.0,
            memory=None,
        ),
    )


def test_each_record_carries_its_own_pages_time_even_when_read_ahead():
    read = partition_read(pages([1, 2], [3], [4, 5]), {})
    items = list(read.items())  # every page read before any record is looked at
    records = [item for item in items if isinstance(item, ExtractedRecord)]
    assert [r["id"] for r in records] == [1, 2, 3, 4, 5]
    minutes = [(r.time_extracted - START) // timedelta(minutes=1) for r in records]
    assert minutes == [0, 0, 1, 2, 2]


def test_a_checkpoint_comes_between_pages_with_the_ids_sent_before_it():
    state: dict[str, t.Any] = {}
    read = partition_read(pages([1, 2], [3]), state, detects_deletions=True)
    items = read.items()
    seen: list[object] = []
    held_at_checkpoint: list[object] = []
    try:
        while True:
            item = next(items)
            if item is StateDue.CHECKPOINT:
                numbers, _ = deletions.decode_ids(state[deletions.STATE_KEY])
                held_at_checkpoint.append(sorted(numbers))
            seen.append(item if isinstance(item, StateDue) else item["id"])
    except StopIteration as done:
        outcome = done.value
    assert seen == [1, 2, StateDue.CHECKPOINT, 3]
    assert held_at_checkpoint == [[1, 2]]
    assert outcome.state is state
    assert outcome.summary.delivered == 3
    numbers, _ = deletions.decode_ids(state[deletions.STATE_KEY])
    assert sorted(numbers) == [1, 2, 3]
