"""One partition's read, as one object: from its remembered state to its new one.

`PartitionRead` takes the partition's state (the SDK's dict, changed in place), a page
source and plain record functions. Its `items()` yields what the stream hands the SDK:
each record (an `ExtractedRecord`, carrying when its page arrived and the partition's
skip_unchanged gate) and `StateDue` where a STATE is to be written; it returns a
`PartitionOutcome`; a read that never gets there is ended with `end_early`. Whether the
memory is trusted (tap_cube/records/remembered.py), the checkpoints, what an early end
keeps, and what a complete read puts back are decided here, so the stream keeps no fact
of the partition being read.
"""

from __future__ import annotations

import enum
import time
import typing as t
from array import array
from dataclasses import dataclass
from datetime import UTC, datetime

from tap_cube.errors import InaccessibleError
from tap_cube.records import changes, deletions, memory_age, remembered
from tap_cube.records.completeness import Checkpoint, CompleteRead, DeletionRule, ReadSummary
from tap_cube.records.deletions import DELETED_AT

if t.TYPE_CHECKING:
    from collections.abc import Callable, Generator, Iterator, Sequence

    from tap_cube.api.client import CubeClient
    from tap_cube.api.concurrency import ConcurrencyLimit
    from tap_cube.api.page import Page
    from tap_cube.records.completeness import PartitionList, RecordPath
    from tap_cube.settings import Settings

State = dict[str, t.Any]


@dataclass(frozen=True)
class RequestFigures:
    """How a partition's requests went, for its closing line: retries and 429s, and the
    run's limit of requests in flight as it settled (tap_cube/api/concurrency.py)."""

    retries: int = 0
    throttled: int = 0
    limit: int = 1
    ceiling: int = 1
    #: The latency floor in seconds, None before any answer came.
    floor: float | None = None

    @classmethod
    def of(cls, client: CubeClient, limit: ConcurrencyLimit, where: str) -> RequestFigures:
        """The figures of the partition `where`, as `client` and the run's `limit` have them."""
        return cls(
            retries=client.retries_of(where),
            throttled=client.throttled_of(where),
            limit=limit.current,
            ceiling=limit.ceiling,
            floor=limit.floor,
        )

    def shown_floor(self) -> str:
        return f"{self.floor * 1000:.0f} ms" if self.floor is not None else "unknown"


class StateDue(enum.Enum):
    """A moment to write the stream's STATE, as the partition's read yields it."""

    #: Between two pages of a long partition: the ids sent so far, and the stored
    #: hashes while they still vouch for all that went out.
    CHECKPOINT = "checkpoint"


class ChangeGate:
    """skip_unchanged for the partition being read: which records go out, and whether
    its stored hashes still vouch for everything that went out."""

    def __init__(self, change_filter: changes.ChangeFilter, *, vouching: bool) -> None:
        self.filter = change_filter
        self.vouching = vouching

    def lets_out(
        self,
        record: dict[str, t.Any],
        emitted: list[tuple[str, dict[str, t.Any]]],
        write_state: Callable[[], None],
    ) -> bool:
        """Whether `record` (as `emitted`: stream and record per message) goes out; its
        hash is remembered either way, and deletion records always go out.

        Before the first record going out that the stored hashes do not vouch for (a
        change, a new record, a deletion), `write_state` writes a STATE without them,
        once. Should the run stop once the target has loaded that record, the next run
        then sends the partition whole (docs/meltano.md says what heals the rest).
        """
        if not emitted:
            return True
        if DELETED_AT not in record and not self.filter.admits(emitted):
            return False
        if self.vouching:
            self.vouching = False
            write_state()
        return True

    def stored_hashes(self) -> str | None:
        """The stored hashes as the state holds them, while they still vouch."""
        if self.vouching and len(self.filter.previous):
            return changes.encode_hashes(self.filter.previous)
        return None


class ExtractedRecord(dict[str, t.Any]):
    """A record on its way to the SDK, with what its messages need of its read."""

    __slots__ = ("changes", "time_extracted")

    changes: ChangeGate | None
    time_extracted: datetime


@dataclass(frozen=True, slots=True)
class ReadSwitches:
    """Whether a stream's spec tracks deletions and changes, and whether this run
    detects and skips them (the settings detect_deletions and skip_unchanged)."""

    tracks_deletions: bool
    tracks_changes: bool
    detects_deletions: bool
    skips_unchanged: bool

    @classmethod
    def of(
        cls, settings: Settings, *, tracks_deletions: bool, tracks_changes: bool
    ) -> ReadSwitches:
        """The switches of a spec that tracks what it says, in a run with `settings`."""
        return cls(
            tracks_deletions=tracks_deletions,
            tracks_changes=tracks_changes,
            detects_deletions=tracks_deletions and settings.detect_deletions,
            skips_unchanged=tracks_changes and settings.skip_unchanged,
        )

    @property
    def keeps_state(self) -> bool:
        """Whether partitions keep delivered ids or record hashes in their state."""
        return self.tracks_deletions or self.tracks_changes


@dataclass(frozen=True, slots=True)
class ReadPolicy:
    """What the stream and its settings make of each partition's read."""

    stream_name: str
    #: The field records are told apart by in a partition (None: they are keyed otherwise).
    id_field: str | None
    #: Whether the list comes in DRF pages with `next` links, not as one JSON list.
    paginated: bool
    #: The setting that chose the partitions, for messages about them.
    partition_setting: str
    #: Whether the stream may find none of its partitions accessible.
    optional: bool
    switches: ReadSwitches
    #: Whether a partition answering 403 or 404 before its first page is skipped.
    skips_inaccessible: bool
    max_deletion_share: float
    #: The id field's schema, for deletion records (None without deletions).
    id_schema: dict[str, t.Any] | None
    #: Seconds at least between two STATEs while one partition is read.
    checkpoint_interval: float
    #: What the memory is held to, for partitions that keep delivered ids or record
    #: hashes in their state (None: a partition that keeps nothing there).
    memory: remembered.MemoryRules | None


@dataclass(frozen=True, slots=True)
class PartitionOutcome:
    """What a partition's read came to; its state is the one it was given, changed."""

    state: State
    summary: ReadSummary
    #: Whether it answered 403 or 404 and was skipped.
    skipped: bool = False


class PartitionRead:
    """The read of one partition, its state taken in before and put back after."""

    def __init__(
        self,
        state: State,
        pages: Callable[..., Iterator[Page]],
        partition: PartitionList,
        path: RecordPath,
        policy: ReadPolicy,
        *,
        siblings: Sequence[State] = (),
        requests: Callable[[], RequestFigures] = RequestFigures,
    ) -> None:
        self._state = state
        self._partition = partition
        self._policy = policy
        #: The states of the stream's other partitions (for the first-run line).
        self._siblings = siblings
        self._requests = requests
        # With detect_deletions off, ids are kept only where a run with it on kept some.
        keeps_ids = policy.switches.detects_deletions or deletions.STATE_KEY in state
        self._say_where_deletions_start()
        self._forget_distrusted()
        rule = self._rule_for_deletions() if keeps_ids else None
        self._gate = self._take_stored_hashes()
        #: Whether every record goes out: no stored hashes are compared with.
        self._sends_whole = self._gate is None or not len(self._gate.filter.previous)
        self._checkpoints = Checkpoint(policy.checkpoint_interval)
        self._read = CompleteRead(pages, partition, path, rule)

    def items(self) -> Generator[ExtractedRecord | StateDue, None, PartitionOutcome]:
        """The records of the partition, each once, and the STATEs due between them;
        returns its outcome (a 403 or 404 before any page may skip it). A read that does
        not get there ends with `end_early`."""
        started, started_at = time.monotonic(), datetime.now(UTC)
        read, gate = self._read, self._gate
        try:
            # One loop, not a generator per step: it runs for every record.
            for item in read.extracted():
                if item is None:  # a page begins: every record before it went out
                    yield from self._checkpoint(read)
                    continue
                record, arrived_at = item
                extracted = ExtractedRecord(record)
                extracted.time_extracted = arrived_at
                extracted.changes = gate
                yield extracted
        except InaccessibleError as exc:
            if read.pages or not self._policy.skips_inaccessible:
                raise
            self._partition.logger.warning("%s; skipping it", exc)
            self._keep_stored_hashes()  # not read: the next run compares with them
            self._ended()
            return PartitionOutcome(self._state, read.summary, skipped=True)
        self._ended()
        self._put_back(read.summary, started_at)
        self._log_done(read.summary, time.monotonic() - started)
        return PartitionOutcome(self._state, read.summary)

    def end_early(self) -> bool:
        """For a read that ended early (an error, or a signal wherever in the run it
        landed): puts in the state its delivered ids with those it sent (CompleteRead),
        and its stored hashes again while they still vouch for everything sent; whether
        that is worth a STATE (it sent records). The run still fails; the target confirms
        that STATE once it has loaded the records before it."""
        self._keep_stored_hashes()
        self._ended()
        delivered = self._read.summary.delivered_ids
        if delivered is None:
            return False
        self._state[deletions.STATE_KEY] = delivered
        if self._policy.memory is not None:
            remembered.note_what_memory_vouches_for(self._state, self._policy.memory)
        return True

    def _ended(self) -> None:
        """The stored hashes vouch for nothing more once the read is over."""
        if self._gate is not None:
            self._gate.vouching = False

    # --- before the read ------------------------------------------------------------

    def _say_where_deletions_start(self) -> None:
        """One line for a partition that deletions track, without delivered ids yet."""
        state, partition = self._state, self._partition
        if not self._policy.switches.detects_deletions or deletions.STATE_KEY in state:
            return
        others = any(p is not state and deletions.STATE_KEY in p for p in self._siblings)
        where = partition.where
        line = remembered.deletions_start_here(partition.stream_name, where, others=others)
        (partition.logger.warning if others else partition.logger.info)("%s", line)

    def _forget_distrusted(self) -> None:
        """Lets go of memory this run does not trust, with a line where that changes what
        is sent or deleted (tap_cube/records/remembered.py)."""
        rules, partition = self._policy.memory, self._partition
        if rules is None:
            return
        reason = remembered.distrust_reason(self._state, rules, datetime.now(UTC))
        if reason is not None and remembered.forget_distrusted(self._state, rules):
            partition.logger.info(
                "%s: %s: sent whole this once: %s", partition.stream_name, partition.where, reason
            )

    def _take_stored_hashes(self) -> ChangeGate | None:
        """skip_unchanged's gate, with the stored hashes taken out of the state (None:
        skip_unchanged is off, every record goes out).

        They are held decoded while the partition is read, and their text leaves the
        state (megabytes at a million records); a complete read puts new ones.
        """
        if not self._policy.switches.skips_unchanged:
            return None
        stored = self._state.pop(changes.STATE_KEY, None)
        previous = changes.decode_hashes(stored) if stored else array("Q")
        return ChangeGate(changes.ChangeFilter(previous), vouching=bool(stored))

    def _rule_for_deletions(self) -> DeletionRule | None:
        """detect_deletions, or with it off the delivered ids kept current (completeness.py)."""
        policy = self._policy
        if not policy.switches.tracks_deletions or policy.id_schema is None:
            return None
        return DeletionRule(
            delivered_before=self._state.get(deletions.STATE_KEY),
            max_share=policy.max_deletion_share,
            id_schema=policy.id_schema,
            marks_deleted=policy.switches.detects_deletions,
        )

    # --- while it is read -----------------------------------------------------------

    def _checkpoint(self, read: CompleteRead) -> Iterator[StateDue]:
        """Between two pages of a long partition, once its checkpoint is due: a STATE with
        the ids sent so far together with those remembered, and the stored hashes only
        while they still vouch for all that went out (`ChangeGate.lets_out`).

        A target hands a STATE back once it has loaded the records before it, so a run
        whose target drains when stopped (or at a batch boundary) leaves Meltano a state
        that covers what the table got: a record it sent that is gone by the next
        complete read is then still marked deleted.
        """
        checkpoint = self._checkpoints
        if not checkpoint.due():
            return
        with checkpoint.timed():
            delivered = read.sent_so_far()
            if delivered is None:
                return
            self._state[deletions.STATE_KEY] = delivered
            self._keep_stored_hashes()
            try:
                yield StateDue.CHECKPOINT
            finally:
                # The read goes on: a STATE written later (a withdrawal) must not hold them.
                self._state.pop(changes.STATE_KEY, None)

    def _keep_stored_hashes(self) -> None:
        """Puts the stored hashes back into the state, while they still vouch for all
        that went out of the partition."""
        stored = self._gate.stored_hashes() if self._gate is not None else None
        if stored is not None:
            self._state[changes.STATE_KEY] = stored

    # --- after a complete read ------------------------------------------------------

    def _put_back(self, summary: ReadSummary, started_at: datetime) -> None:
        """What a complete read leaves in the state: delivered ids, new hashes, when the
        memory was born (when the partition was last sent whole), and what it vouches for."""
        state, policy, gate = self._state, self._policy, self._gate
        if summary.delivered_ids is not None:
            state[deletions.STATE_KEY] = summary.delivered_ids
        if policy.memory is not None and self._sends_whole:
            state[memory_age.STATE_KEY] = started_at.isoformat()
        if gate is not None:
            # After a read again, some records sent may since have been deleted; their
            # hashes must not make them look unchanged when they come back, so the
            # next run compares with nothing and sends the partition whole.
            kept = gate.filter.finish() if not summary.reread else ()
            state[changes.STATE_KEY] = changes.encode_hashes(kept)
        elif policy.switches.tracks_changes:
            # Hashes from before a run without skip_unchanged may vouch for rows it
            # has since marked deleted.
            state.pop(changes.STATE_KEY, None)
        if policy.memory is not None:
            remembered.note_what_memory_vouches_for(state, policy.memory)

    def _log_done(self, summary: ReadSummary, seconds: float) -> None:
        unchanged = self._gate.filter.unchanged if self._gate is not None else 0
        partition, requests = self._partition, self._requests()
        partition.logger.info(
            "%s: %s done: %d records, %d pages, %d retries, %.1f s; "
            "%d emitted, %d unchanged (skipped), %d deleted; "
            "limit %d of %d requests at once, latency floor %s, %d throttled (429)",
            partition.stream_name,
            partition.where,
            summary.delivered,
            summary.pages,
            requests.retries,
            seconds,
            summary.delivered - unchanged,
            unchanged,
            summary.deleted,
            requests.limit,
            requests.ceiling,
            requests.shown_floor(),
            requests.throttled,
        )
