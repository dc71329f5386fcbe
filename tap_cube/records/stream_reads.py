"""A stream's partition reads, one after another, and what they came to.

`StreamReads` holds every partition's read to one `ReadPolicy` (made by
tap_cube/streams/stream_facts.py). It runs each partition's read
(tap_cube/records/partition_read.py), writing the STATEs it asks for through the
function it was given and adding its outcome (tap_cube/records/stream_outcome.py);
after the last partition, `finish` fails or refuses ACTIVATE_VERSION where that outcome
says so; after a run that failed, `end_run` puts in the state what its reads leave and
writes it. The stream hands in values and gets records back.
"""

from __future__ import annotations

import typing as t
from functools import partial

from tap_cube.records.completeness import PartitionList
from tap_cube.records.partition_read import PartitionRead, ReadPolicy, RequestFigures, StateDue
from tap_cube.records.stream_outcome import StreamOutcome

if t.TYPE_CHECKING:
    import logging
    from collections.abc import Callable, Generator, Iterator, Sequence

    from tap_cube.api.client import CubeClient
    from tap_cube.api.concurrency import ConcurrencyLimit
    from tap_cube.api.page import Page
    from tap_cube.records.completeness import RecordPath
    from tap_cube.records.partition_read import ExtractedRecord, State


#: Compared with every item of a read: an enum's member, looked up on its class each
#: time, costs as much as a record's key (Python 3.11's EnumType has a __getattr__).
_CHECKPOINT = StateDue.CHECKPOINT


class StreamReads:
    """The reads of one stream's partitions, one after another."""

    def __init__(
        self,
        policy: ReadPolicy,
        *,
        write_state: Callable[[], None],
        logger: logging.Logger,
        client: CubeClient,
        limit: ConcurrencyLimit,
    ) -> None:
        """`write_state`: writes a STATE now. `client` and the run's `limit` of requests in
        flight say how a partition's requests went, for its progress and closing lines."""
        self.policy = policy
        self._name, self._logger = policy.stream_name, logger
        self._client, self._limit = client, limit
        #: What the partitions read so far came to (skipped, unchecked, withheld).
        self.outcome = StreamOutcome(policy.stream_name)
        self._write_state = write_state
        #: The partition being read, with its items (None between reads).
        self._reading: tuple[PartitionRead, Generator[t.Any, None, t.Any]] | None = None
        #: Whether a partition was read to its end (its state is new).
        self._read_whole = False

    @property
    def keeps_state(self) -> bool:
        """Whether a partition's read keeps ids or hashes in the partition's state (a call
        outcomes window is no partition of its own: it is given none)."""
        return self.policy.memory is not None

    def partition_records(
        self,
        where: str,
        state: State,
        pages: Callable[..., Iterator[Page]],
        path: RecordPath,
        *,
        siblings: Sequence[State],
        progress_interval: float,
    ) -> Iterator[ExtractedRecord]:
        """The records of the partition `where`, each exactly once, or an error that says
        why not; the STATEs its read asks for are written on the way."""
        limit = self._limit
        partition = PartitionList(
            stream_name=self._name,
            where=where,
            logger=self._logger,
            id_field=self.policy.id_field,
            paginated=self.policy.paginated,
            progress_interval=progress_interval,
            limit=lambda: limit.current,
        )
        requests = partial(RequestFigures.of, self._client, limit, where)
        read = PartitionRead(
            state, pages, partition, path, self.policy, siblings=siblings, requests=requests
        )
        items = read.items()
        self._reading = (read, items)
        try:
            while True:
                try:
                    item = next(items)
                except StopIteration as done:
                    self._reading, self._read_whole = None, True
                    self.outcome.add(partition.where, done.value)
                    return
                if item is _CHECKPOINT:
                    self._write_state()
                else:
                    yield item
        finally:
            items.close()  # closed by the SDK (which failed): so is the read

    def end_early(self) -> bool:
        """After the run failed (an error, or a signal wherever it landed): puts in the
        state what the reads leave, and says whether a STATE is due on the way out. The
        partition being read keeps what it sent (`PartitionRead.end_early`); those read
        to their end keep what they came to, which the SDK writes only after the
        stream's last partition. A stream whose partitions keep no ids or hashes
        (`keeps_state`) leaves its state to the SDK."""
        due = self._read_whole and self.keeps_state
        if self._reading is not None:
            (read, items), self._reading = self._reading, None
            items.close()
            due = read.end_early() or due
        return due

    def end_run(self, *, write_state: bool) -> None:
        """After the run failed: the reads ended early (`end_early`) and, with
        `write_state`, the STATE that makes due written on the way out."""
        if self.end_early() and write_state:
            try:
                self._write_state()
            except Exception:  # the error that ended the run is the one to report
                self._logger.warning(
                    "%s: the state could not be written as the run ended", self._name
                )

    def finish(self, partitions: int, *, activates_version: bool) -> None:
        """After the stream's last partition: fails when none of its `partitions` was
        accessible (unless `optional`) or deletions were withheld, naming those skipped;
        and when it `activates_version`, refuses to unless every partition was read
        whole: a skipped one would have its rows marked deleted, and so would the rows an
        unchecked read missed."""
        outcome, setting = self.outcome, self.policy.partition_setting
        outcome.check(
            partitions,
            setting,
            optional=self.policy.optional,
            max_deletion_share=self.policy.max_deletion_share,
            logger=self._logger,
        )
        refused = outcome.activate_version_refused(setting) if activates_version else None
        if refused is not None:
            raise refused
