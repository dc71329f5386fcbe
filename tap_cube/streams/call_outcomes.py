"""Call outcomes and product registrations: rows about customers' calls, in day windows.

Read per campaign or per data owner, incrementally: each run reads the days since the
bookmark, less a lookback, in windows of whole days. Their specs are rows of
tap_cube/streams/specs.py whose reader is `DayWindowStream`.
"""

from __future__ import annotations

import typing as t
from dataclasses import replace
from datetime import UTC, date, datetime, timedelta, tzinfo
from functools import cached_property, partial

from singer_sdk.helpers._state import PROGRESS_MARKERS
from typing_extensions import override

from tap_cube.errors import ConfigError
from tap_cube.records.converters import instant, parse_bookmark
from tap_cube.records.day_rows import DayRowFit
from tap_cube.records.keys import numbering_keyer
from tap_cube.streams.cube_stream import CubeStream
from tap_cube.streams.schema import (
    CALL_OUTCOME_TIMESTAMP,
    SUBMISSION_SEQ,
    SUBMITTED,
)

if t.TYPE_CHECKING:
    from collections.abc import Iterator

    from singer_sdk.helpers.types import Context

    from tap_cube.records.record_fit import RecordFit


def bookmark_of(timestamp: str) -> str:
    """A bookmark: the instant of an RFC 3339 date-time, in UTC, to the microsecond."""
    return instant(timestamp).astimezone(UTC).isoformat(timespec="microseconds")


#: How far past the run's clock a timestamp may lie without a warning: the offset of a
#: local time sent without one (at most 14 hours) and clocks that differ a little.
CLOCK_TOLERANCE = timedelta(days=1)


#: More day windows than this in one partition get a warning: a start_date far back.
MANY_WINDOWS = 1000


def _local_day(moment: datetime, zone: tzinfo) -> date:
    """The day of `moment` in `zone`; at the first or last instant, where an offset
    would leave the days a date holds, its day in UTC."""
    try:
        return moment.astimezone(zone).date()
    except OverflowError:
        return moment.astimezone(UTC).date()


def _days_before(day: date, days: timedelta) -> date:
    """`day` less `days`, and no earlier than the first day a date holds."""
    return day - days if day - date.min >= days else date.min


def _api_date(day: date) -> str:
    return day.strftime("%Y%m%d")


class DayWindowStream(CubeStream):
    """Rows about customers' calls, read incrementally in windows of whole days.

    The API gives call outcomes and product registrations no id. The key is the
    partition, the customer, the second the row was submitted and `submission_seq`
    (which of the rows sharing those it is, in the server's order): stable under edits
    of a row's other fields, so re-reading the lookback window updates rows instead of
    adding them, and rows that share customer and second (several products in one
    sale; anonymized customers, whose id is "") are all kept. Incremental, so neither
    detect_deletions nor skip_unchanged applies: a row missing from a window is not
    known to be gone, and a window read again is there to update rows edited late.
    """

    replication_key = CALL_OUTCOME_TIMESTAMP
    is_sorted = False
    partial_send = "it is read in day windows from its bookmark, never whole"

    @cached_property
    @override
    def record_fit(self) -> RecordFit:
        # Rows have no id: they are keyed and numbered (tap_cube/records/keys.py), and
        # fitted as day rows (tap_cube/records/day_rows.py).
        fit = super().record_fit
        row_fit = DayRowFit(
            fit.coercion,
            self.facts.zone,
            stream_name=self.name,
            timestamp_field=CALL_OUTCOME_TIMESTAMP,
            submitted_fields=SUBMITTED,
            extra_columns=self.spec.extra_columns,
        )
        return replace(
            fit,
            keyer=partial(numbering_keyer, "crm__customer_id", SUBMITTED, SUBMISSION_SEQ),
            fit=row_fit,
            owned=(*fit.owned, SUBMISSION_SEQ, *self.spec.extra_columns),
        )

    @override
    def planned_partitions(self) -> list[dict[str, t.Any]]:
        # Windows are planned as they are read: each depends on the partition's bookmark.
        self.facts.warn_vanished(self.tap_state)
        return []

    @override
    def first_page_params(self, context: Context | None) -> dict[str, t.Any]:
        context = context or {}
        return {"from_date": context["from_date"], "to_date": context["to_date"]}

    @override
    def describe_partition(self, context: Context | None) -> str:
        if context and "from_date" in context:
            partition = {k: v for k, v in context.items() if k not in ("from_date", "to_date")}
            return (
                f"{super().describe_partition(partition)} "
                f"({context['from_date']}-{context['to_date']})"
            )
        return super().describe_partition(context)

    def windows(self, context: Context | None, now: datetime) -> Iterator[tuple[date, date]]:
        """Date windows from the bookmark (less the lookback) or start_date, up to today.

        start_date bounds every run, not only the first: a window never starts before
        it, and a start_date in the future reads nothing until that day.
        """
        start, today = self._days_to_read(context, now)
        span = timedelta(days=self.window_days - 1)
        planned = (today - start).days // self.window_days + 1 if start <= today else 0
        if planned > MANY_WINDOWS:
            self.logger.warning(
                "%s: %s: %d day windows to read, from %s to %s, a request series each; a "
                "later start_date, or a larger call_outcomes_window_days, makes fewer",
                self.name,
                self.describe_partition(context),
                planned,
                start,
                today,
            )
        while start <= today:
            end = today if today - start <= span else start + span
            yield start, end
            start = end + timedelta(days=1)

    def latest_window(self, partition: Context, now: datetime) -> Context | None:
        """The partition's context with the last of its windows (up to today): rows that
        show the fields rows carry now. None when start_date is still to come."""
        start, today = self._days_to_read(partition, now)
        if start > today:
            return None
        first = start + timedelta(days=(today - start).days // self.window_days * self.window_days)
        return {**partition, "from_date": _api_date(first), "to_date": _api_date(today)}

    @property
    def window_days(self) -> int:
        return self.facts.settings.call_outcomes_window_days

    def _days_to_read(self, context: Context | None, now: datetime) -> tuple[date, date]:
        """The first day this run reads of the partition, and today (Cube's days: in the
        `timezone` setting's zone)."""
        bookmark = parse_bookmark(self.get_context_state(context).get("replication_key_value"))
        lookback = timedelta(days=self.facts.settings.call_outcomes_lookback_days)
        first_day = self.facts.settings.start_date
        if bookmark is None and not first_day:
            msg = f"{self.name} needs start_date (the first day to read), e.g. 2024-01-01"
            raise ConfigError(msg)
        starts = [date.fromisoformat(str(first_day))] if first_day else []
        if bookmark is not None:
            starts.append(_days_before(_local_day(bookmark, self.facts.zone), lookback))
        return max(starts), now.astimezone(self.facts.zone).date()

    def clamp_bookmark(self, holder: dict[str, t.Any], now: datetime, where: str, of: str) -> None:
        """Keep `holder`'s bookmark from passing `now`, the run's clock.

        A timestamp later than the run is no time the data has reached: kept as the
        bookmark, it would make every later run start after the rows still to come.
        Within CLOCK_TOLERANCE it is a time without its offset or a clock running
        ahead, and clamped quietly; beyond it, with a warning.
        """
        value = holder.get("replication_key_value")
        stamp = parse_bookmark(value)
        if stamp is None or stamp <= now:
            return
        clock = bookmark_of(now.isoformat())
        if stamp > now + CLOCK_TOLERANCE:
            self.logger.warning(
                "%s: %s: %s %s is later than this run's clock (%s); the bookmark is the "
                "clock instead, so no later row is skipped",
                self.name,
                where,
                of,
                value,
                clock,
            )
        holder["replication_key_value"] = clock

    @override
    def _increment_stream_state(
        self, latest_record: dict[str, t.Any], *, context: Context | None = None
    ) -> None:
        # The SDK keeps the greatest bookmark by comparing text; text in UTC, all of one
        # width, compares as the instants do, whatever offsets the rows were sent with.
        value = latest_record.get(CALL_OUTCOME_TIMESTAMP)
        if isinstance(value, str):
            latest_record = {**latest_record, CALL_OUTCOME_TIMESTAMP: bookmark_of(value)}
        super()._increment_stream_state(latest_record, context=context)

    @override
    def read_partition(self, context: Context | None) -> Iterator[dict[str, t.Any]]:
        # The run's clock, read when the partition's read starts.
        now = datetime.now(UTC)
        state = self.get_context_state(context)
        where = self.describe_partition(context)
        self.clamp_bookmark(state, now, where, "the state's bookmark")
        for start, end in self.windows(context, now):
            window = {**(context or {}), "from_date": _api_date(start), "to_date": _api_date(end)}
            yield from super().read_partition(window)
        # The SDK keeps this read's latest timestamp here until the stream is done.
        latest = state.get(PROGRESS_MARKERS)
        if isinstance(latest, dict):
            self.clamp_bookmark(latest, now, where, "a row stamped")
        if not state.get("replication_key_value"):
            # A partition without rows still has been read up to now; without this
            # bookmark every run would read it again from start_date. Records found
            # later replace it with their own latest timestamp.
            state["replication_key"] = CALL_OUTCOME_TIMESTAMP
            state["replication_key_value"] = bookmark_of(now.isoformat())
