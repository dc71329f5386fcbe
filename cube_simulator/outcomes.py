"""Call outcomes and product registrations per campaign and day, with the ones tests add.

A list of outcomes for a window of days is the outcomes of each campaign, day after day,
campaign after campaign; each day has `per_day` generated rows (none while the
campaign's container is empty) and then any added by tests.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime, timedelta
from typing import TYPE_CHECKING
from zoneinfo import ZoneInfo

from cube_simulator.container import anonymize
from cube_simulator.fake_values import encode
from cube_simulator.outcome_rows import generated_outcome, generated_products, product_row

if TYPE_CHECKING:
    from collections.abc import Iterable

    from cube_simulator.campaigns import Campaign, Campaigns
    from cube_simulator.container import Snapshot

_TIMESTAMP = "call_outcome__report_as__submitted_when_timestamp"
_SUBMITTED_WHEN = "call_outcome__report_as__submitted_when"

#: A campaign with its container's snapshot and its days: (day, number of outcomes).
Segment = tuple["Campaign", "Snapshot", list[tuple[date, int]]]


class CallOutcomes:
    """Generated outcomes from `start` to today, and the ones tests add or edit."""

    def __init__(
        self, campaigns: Campaigns, start: date, per_day: int, today: date | ZoneInfo
    ) -> None:
        """`today` is a fixed day, or the zone whose real date is today."""
        self._campaigns = campaigns
        self._lock = campaigns.lock
        self.start = start
        self.per_day = per_day
        self._today = today
        # Outcomes added or edited by tests, keyed by campaign and day.
        self._extra: dict[tuple[int, date], list[dict[str, object]]] = {}
        self._edits: dict[tuple[int, date, int], dict[str, object]] = {}
        # The products of outcomes added by tests, when given; else derived from the row.
        self._products: dict[tuple[int, date, int], list[dict[str, object]]] = {}
        self.version = 0

    def today(self) -> date:
        if isinstance(self._today, ZoneInfo):
            return datetime.now(self._today).date()
        return self._today

    def _per_day(self, snap: Snapshot) -> int:
        return self.per_day if snap.size else 0

    def _days(self, camp: Campaign, lo: date, hi: date, snap: Snapshot) -> list[tuple[date, int]]:
        lo = max(lo, self.start)
        hi = min(hi, self.today())
        per_day = self._per_day(snap)
        days = []
        day = lo
        while day <= hi:
            days.append((day, per_day + len(self._extra.get((camp.id, day), ()))))
            day += timedelta(days=1)
        return days

    def _outcome(self, camp: Campaign, snap: Snapshot, day: date, k: int) -> dict[str, object]:
        per_day = self._per_day(snap)
        rec = generated_outcome(camp, snap, day, k, per_day)
        if k >= per_day:
            rec.update(self._extra[(camp.id, day)][k - per_day])
        edit = self._edits.get((camp.id, day, k))
        if edit:
            rec.update(edit)
        return rec

    def _outcome_products(
        self, camp: Campaign, snap: Snapshot, day: date, k: int
    ) -> list[dict[str, object]]:
        outcome = self._outcome(camp, snap, day, k)
        given = self._products.get((camp.id, day, k))
        if given is not None:
            return [product_row(outcome, product) for product in given]
        return generated_products(camp, day, k, outcome)

    def _segments(self, camps: Iterable[Campaign], lo: date, hi: date) -> list[Segment]:
        """Call under the lock: each campaign with its container's snapshot and its days."""
        found = []
        for camp in camps:
            snap = camp.container.snapshot()
            found.append((camp, snap, self._days(camp, lo, hi, snap)))
        return found

    def _series_rows(
        self, segments: list[Segment], start: int, stop: int
    ) -> list[dict[str, object]]:
        """Rows start..stop of the outcomes of several campaigns, campaign after campaign."""
        rows: list[dict[str, object]] = []
        pos = 0
        for camp, snap, days in segments:
            for day, n in days:
                if pos + n > start and pos < stop:
                    for k in range(max(0, start - pos), min(n, stop - pos)):
                        rows.append(self._outcome(camp, snap, day, k))
                pos += n
                if pos >= stop:
                    return rows
        return rows

    def _product_rows(self, segments: list[Segment]) -> list[dict[str, object]]:
        return [
            row
            for camp, snap, days in segments
            for day, n in days
            for k in range(n)
            for row in self._outcome_products(camp, snap, day, k)
        ]

    def listing(self, camps: list[Campaign], lo: date, hi: date, *, products: bool) -> Listing:
        """What a request for outcomes or product registrations of [lo, hi] pages through."""
        with self._lock:
            segments = self._segments(camps, lo, hi)
            version = self.version
            # Sales are few: render them all now, and page through the list.
            sales = self._product_rows(segments) if products else []
        return Listing(self, segments, version, sales if products else None)

    def encoded_rows(self, segments: list[Segment], start: int, stop: int) -> bytes:
        with self._lock:
            return encode(self._series_rows(segments, start, stop))

    def call_outcomes(
        self, camps: list[Campaign], lo: date | None, hi: date | None
    ) -> list[dict[str, object]]:
        """The outcomes of `camps` for [lo, hi] (default: today only)."""
        with self._lock:
            segments = self._segments(camps, lo or self.today(), hi or self.today())
            return self._series_rows(segments, 0, sum(n for s in segments for _, n in s[2]))

    def product_registrations(
        self, camps: list[Campaign], lo: date | None, hi: date | None
    ) -> list[dict[str, object]]:
        """The product registrations of `camps` for [lo, hi] (default: today only)."""
        with self._lock:
            return self._product_rows(self._segments(camps, lo or self.today(), hi or self.today()))

    def add(
        self,
        campaign_id: int,
        day: date,
        changes: dict[str, object] | None,
        *,
        anonymized: bool,
        products: list[dict[str, object]] | None,
    ) -> dict[str, object]:
        camp = self._campaigns.by_id[campaign_id]
        changes = dict(changes or {})
        stamp = changes.get(_TIMESTAMP)
        if isinstance(stamp, str) and _SUBMITTED_WHEN not in changes:
            # One submission: its local minute is the timestamp's (product rows show only it).
            changes[_SUBMITTED_WHEN] = f"{stamp[:10]} {stamp[11:16]}"
        if anonymized:
            blank: dict[str, object] = {}
            anonymize(blank, camp.container.customer(camp.container.first, {}))
            changes = {**blank, **changes}
        with self._lock:
            extra = self._extra.setdefault((campaign_id, day), [])
            extra.append(changes)
            self.version += 1
            snap = camp.container.snapshot()
            k = self._per_day(snap) + len(extra) - 1
            if products is not None:
                self._products[(campaign_id, day, k)] = [dict(p) for p in products]
            return self._outcome(camp, snap, day, k)

    def update(
        self, campaign_id: int, day: date, position: int, changes: dict[str, object]
    ) -> None:
        if campaign_id not in self._campaigns.by_id:
            raise KeyError(f"no campaign {campaign_id}")
        with self._lock:
            key = (campaign_id, day, position)
            self._edits[key] = {**self._edits.get(key, {}), **changes}
            self.version += 1


@dataclass(frozen=True)
class Listing:
    """Outcomes or (with `sales`) product registrations, as taken when a request came."""

    outcomes: CallOutcomes
    segments: list[Segment]
    version: int  # of the outcomes added and edited by tests
    sales: list[dict[str, object]] | None  # product registrations, rendered up front

    @property
    def count(self) -> int:
        if self.sales is not None:
            return len(self.sales)
        return sum(n for _, _, days in self.segments for _, n in days)

    @property
    def versions(self) -> tuple[tuple[int, int], ...]:
        """Each campaign's container version: a page cache key part."""
        return tuple((camp.id, snap.version) for camp, snap, _ in self.segments)

    def render(self, start: int, stop: int) -> bytes:
        if self.sales is not None:
            return encode(self.sales[start:stop])
        return self.outcomes.encoded_rows(self.segments, start, stop)
