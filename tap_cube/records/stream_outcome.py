"""What a stream's partitions came to, and what the stream says or refuses once all are read.

Each partition's read (tap_cube/records/partition_read.py) ends with an outcome; the
stream adds them here, and after its last partition fails when nothing was accessible or
deletions were withheld, and refuses ACTIVATE_VERSION when a partition was not read whole.
"""

from __future__ import annotations

import typing as t

from tap_cube.errors import DeletionsWithheldError, InaccessibleError, IncompleteError

if t.TYPE_CHECKING:
    import logging

    from tap_cube.records.partition_read import PartitionOutcome


class StreamOutcome:
    """The partitions of one stream that were skipped, could not be checked as complete,
    or had their deletions withheld."""

    def __init__(self, stream_name: str) -> None:
        self._name = stream_name
        #: Partitions skipped because they answered 403 or 404.
        self.skipped: list[str] = []
        #: Partitions whose read could not be checked as complete (no count).
        self.unchecked: list[str] = []
        #: Why deletions were withheld, per partition (more than max_deletion_share).
        self.withheld: list[str] = []

    def add(self, where: str, outcome: PartitionOutcome) -> None:
        if outcome.skipped:
            self.skipped.append(where)
        if outcome.summary.withheld is not None:
            self.withheld.append(outcome.summary.withheld)
        if outcome.summary.unchecked is not None:
            self.unchecked.append(where)

    def check(
        self,
        partitions: int,
        setting: str,
        *,
        optional: bool,
        max_deletion_share: float,
        logger: logging.Logger,
    ) -> None:
        """After the stream's last partition: fails when none of its `partitions` was
        accessible (unless the stream is `optional`) or deletions were withheld, and
        names the partitions skipped."""
        nothing = self.nothing_accessible(partitions, setting)
        if nothing is not None and not optional:
            raise nothing
        if self.skipped:
            skipped = ", ".join(self.skipped)
            logger.warning("%s: skipped because not accessible: %s", self._name, skipped)
        withheld = self.deletions_withheld(max_deletion_share)
        if withheld is not None:
            raise withheld

    def nothing_accessible(self, partitions: int, setting: str) -> InaccessibleError | None:
        """The error when every one of the stream's `partitions` was skipped."""
        if len(self.skipped) != partitions:
            return None
        msg = (
            f"{self._name}: nothing was accessible: {', '.join(self.skipped)} answered "
            f"403 or 404. Check {setting} against what this user may read, and that "
            "api_url is your account's."
        )
        return InaccessibleError(msg, 0)

    def deletions_withheld(self, max_share: float) -> DeletionsWithheldError | None:
        """The error when a partition would have lost more rows than max_share allows."""
        if not self.withheld:
            return None
        msg = (
            f"{self._name}: {'; '.join(self.withheld)}, more than max_deletion_share "
            f"({max_share:g}) allows, so nothing was marked deleted there and those rows "
            "stay live. If Cube really removed them, run once with max_deletion_share: 1 "
            "(TAP_CUBE_MAX_DELETION_SHARE=1)"
        )
        return DeletionsWithheldError(msg)

    def activate_version_refused(self, setting: str) -> IncompleteError | None:
        """Why ACTIVATE_VERSION may not be sent: a partition skipped would have its rows
        marked deleted, and so would the rows an unchecked read missed."""
        if self.skipped:
            msg = (
                f"{self._name}: ACTIVATE_VERSION (emit_activate_version_messages) was not "
                f"sent: {', '.join(self.skipped)} answered 403 or 404, so the target would "
                "mark its rows deleted; grant this user access, or leave it out of "
                f"{setting}"
            )
            return IncompleteError(msg)
        if self.unchecked:
            msg = (
                f"{self._name}: ACTIVATE_VERSION (emit_activate_version_messages) was not "
                f"sent: the pages of {', '.join(self.unchecked)} carry no count, so the read "
                "cannot be checked as complete and the target would mark the rows it missed "
                "deleted; run again later, or leave emit_activate_version_messages off"
            )
            return IncompleteError(msg)
        return None
