"""The notes' examples (tests/fixtures/notes/, made by scripts/notes_fixtures.py) and how
to run the tap on one of them against the simulator.

Each fixture is one documented response body with where it comes from and which stream
reads its endpoint. Expectations are derived from the fixture itself: its rows, its
`next` link and its `count`.
"""

from __future__ import annotations

import json
import re
import typing as t
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from pathlib import Path
from urllib.parse import parse_qsl, urlsplit
from zoneinfo import ZoneInfo

from cube_simulator import Assignment, Crm
from tests.conftest import cube_today

FIXTURE_DIR = Path(__file__).parent / "fixtures" / "notes"
REPORTS_DIR = Path(__file__).parent / "fixtures" / "reports"
OSLO = ZoneInfo("Europe/Oslo")
SERIES = frozenset(
    {"call_outcomes", "crm_call_outcomes", "product_registrations", "crm_product_registrations"}
)
#: The field each stream cannot read a row without (its key within the partition).
KEY_FIELD = {
    "customers": "crm__customer_id",
    "crm_customers": "crm__customer_id",
    "callflow_customers": "crm__customer_id",
    "crm_callflow_customers": "crm__customer_id",
    "customer_custom_fields": "id",
    "crm_custom_fields": "id",
    "campaigns": "campaign__id",
    **dict.fromkeys(SERIES, "crm__customer_id"),
}
#: Free-form fields gathered by label into one object column.
EXTRA_COLUMNS = ("call_outcome__extra", "product__extra")


@dataclass(frozen=True)
class NotesFixture:
    id: str
    stream: str | None
    request: str | None
    body: t.Any
    draft: bool
    source: dict[str, t.Any]

    @property
    def path(self) -> str:
        return urlsplit(self.request or "").path

    @property
    def query(self) -> dict[str, str]:
        return dict(parse_qsl(urlsplit(self.request or "").query))

    @property
    def rows(self) -> list[dict[str, t.Any]]:
        body = self.body
        if isinstance(body, dict) and isinstance(body.get("results"), list):
            return t.cast("list[dict[str, t.Any]]", body["results"])
        return t.cast("list[dict[str, t.Any]]", body if isinstance(body, list) else [body])

    @property
    def is_page(self) -> bool:
        return isinstance(self.body, dict) and "results" in self.body

    @property
    def count(self) -> int:
        return self.body["count"] if self.is_page else len(self.rows)

    @property
    def window(self) -> tuple[date, date] | None:
        """The days the documented request asks for (call outcomes, product registrations)."""
        if self.stream not in SERIES:
            return None
        days = [self.query.get(name) for name in ("from_date", "to_date")]
        if not all(d and re.fullmatch(r"[0-9]{8}", d) for d in days):
            return None
        lo, hi = (datetime.strptime(t.cast("str", d), "%Y%m%d").date() for d in days)
        return lo, hi

    @property
    def keyed(self) -> bool:
        """Whether every row has the field its stream keys it by (older shapes do not)."""
        field = KEY_FIELD[t.cast("str", self.stream)]
        return all(row.get(field) not in (None, "") or self.stream in SERIES for row in self.rows)

    @property
    def next_is_unusable(self) -> bool:
        """Whether `next` repeats the request or leaves its list, while rows remain."""
        link = self.body.get("next") if self.is_page else None
        if not link or self.count <= len(self.rows):
            return False
        asked = set(parse_qsl(urlsplit(self.request or "").query))
        offered = set(parse_qsl(urlsplit(link).query))
        return not asked < offered

    @property
    def elides_without_link(self) -> bool:
        """Whether `count` announces more rows than shown but no link leads to them."""
        return self.is_page and not self.body.get("next") and self.count > len(self.rows)


def load_fixtures(directory: Path = FIXTURE_DIR) -> list[NotesFixture]:
    """The fixtures of one folder: the notes' examples, or the redacted pages users sent
    (`tap-cube --probe=DIR`, copied into REPORTS_DIR)."""
    fixtures = []
    for path in sorted(directory.glob("*.json")):
        data = json.loads(path.read_text("utf-8"))
        fixtures.append(
            NotesFixture(
                id=data["id"],
                stream=data["stream"],
                request=data["request"],
                body=data["body"],
                draft=data["draft"],
                source=data["source"],
            )
        )
    return fixtures


def numbers(path: str) -> list[int]:
    return [int(n) for n in re.findall(r"/([0-9]+)(?=/|$)", path)]


def crm_type_of(path: str) -> str:
    match = re.search(r"/(B2C|B2B)/", path, re.IGNORECASE)
    return match[1].upper() if match else "B2C"


@dataclass
class World:
    """What the simulator holds and the settings that make the tap read a fixture."""

    assignments: list[Assignment]
    crms: list[Crm]
    settings: dict[str, t.Any]
    #: Other lists the settings make the tap read, answered with an empty page.
    empty: list[str]


def world(fixture: NotesFixture) -> World:
    """An empty container of the kind the fixture's path names, and settings that read
    it, so that every other list the tap asks for answers (empty)."""
    stream = t.cast("str", fixture.stream)
    ids = numbers(fixture.path)
    found = World([], [], {}, [])
    if fixture.path.startswith("/data_owners/"):
        crm = Crm(data_owner_id=ids[0], crm_type=crm_type_of(fixture.path), count=0)
        found.crms.append(crm)
    elif fixture.path.startswith("/assignments/"):
        found.assignments.append(Assignment(id=ids[0], count=0))
        found.settings["assignment_ids"] = [ids[0]]
    else:  # /campaigns and the lists of one campaign
        found.crms.append(Crm(data_owner_id=2, crm_type="B2C", count=0))
    for crm in found.crms:
        found.settings["crms"] = [{"data_owner_id": crm.data_owner_id, "crm_type": crm.crm_type}]
        found.empty += [
            f"/data_owners/{crm.data_owner_id}/crm/{crm.crm_type}/{series}/"
            for series in ("call_outcomes", "product_registrations")
        ]
    if stream in SERIES:
        campaign = ids[0] if fixture.path.startswith("/campaigns/") else 140
        found.settings["campaign_ids"] = [campaign]
        found.empty += [f"/campaigns/{campaign}/call_outcomes/"]
        found.empty += [f"/campaigns/{campaign}/product_registrations/"]
        first = fixture.window[0] if fixture.window else date(2017, 1, 1)
        # One window from before the example's days to today: the example is read once.
        found.settings["start_date"] = (first - timedelta(days=3)).isoformat()
        found.settings["call_outcomes_window_days"] = (cube_today() - first).days + 10
    return found


def same_instant(sent: str, emitted: str, zone: ZoneInfo = OSLO) -> bool:
    """Whether an emitted date-time is the instant a sent one names, local ones in `zone`."""
    for pattern in ("%Y-%m-%dT%H:%M:%S.%f%z", "%Y-%m-%dT%H:%M:%S%z"):
        try:
            out = datetime.strptime(emitted, pattern)
            break
        except ValueError:
            continue
    else:
        return False
    text = sent.strip().replace(" ", "T")
    for pattern in (
        "%Y-%m-%dT%H:%M:%S.%f%z",
        "%Y-%m-%dT%H:%M:%S%z",
        "%Y-%m-%dT%H:%M%z",
        "%Y-%m-%dT%H:%M:%S.%f",
        "%Y-%m-%dT%H:%M:%S",
        "%Y-%m-%dT%H:%M",
    ):
        try:
            parsed = datetime.strptime(text, pattern)
        except ValueError:
            continue
        if parsed.tzinfo is None:
            parsed = parsed.replace(tzinfo=zone)
        return parsed == out and parsed.strftime("%H:%M") == out.strftime("%H:%M")
    return False
