"""Fake customer values, derived from a record's index by hashing, never stored.

A splitmix64 hash (and tabulation tables, cheaper still) picks values from vocabularies
of Norwegian names, e-mails, dates and texts; the values are pre-encoded as JSON
fragments in pools of 4,096 variants, so rendering a record is string joining. Custom
fields get values by type, and with ``messy`` some odd for their type, as real servers
send. ID_STYLES says how a customer id looks for each record index.
"""

from __future__ import annotations

import random
from array import array
from datetime import date, timedelta
from typing import TYPE_CHECKING

import msgspec

if TYPE_CHECKING:
    from collections.abc import Callable

_M64 = (1 << 64) - 1
GOLDEN = 0x9E3779B97F4A7C15


def mix(x: int) -> int:
    """Splitmix64 finaliser: a cheap, well-spread hash; the source of all fake data."""
    x &= _M64
    x = ((x ^ (x >> 30)) * 0xBF58476D1CE4E5B9) & _M64
    x = ((x ^ (x >> 27)) * 0x94D049BB133111EB) & _M64
    return x ^ (x >> 31)


_FIRST_NAMES = (
    "Åse", "Ærlig", "Øystein", "Bjørn", "Kåre", "Solveig", "Håkon", "Ingrid",
    "Tormod", "Siri", "Ørjan", "Mari", "Pål", "Gro", "Jørgen", "Ragnhild",
    "Trond", "Kari", "Sjur", "Åsmund", "Hege", "Øyvind", "Line", "Sigbjørn",
    "Torunn", "Nils", "Målfrid", "Even", "Bjørg", "Ola", "Tove", "Geir",
)  # fmt: skip
_LAST_NAMES = (
    "Bjørnstad", "Øvrebø", "Ås", "Hansen", "Johansen", "Kråkenes", "Sæther", "Løvås",
    "Berg", "Haugen", "Dæhlie", "Strøm", "Nygård", "Aasen", "Fjærli", "Skårdal",
    "Olsen", "Lie", "Bråten", "Sørensen", "Møller", "Vågen", "Tveit", "Hågensen",
    "Næss", "Rønning", "Ødegård", "Solberg", "Åkre", "Kvåle", "Holm", "Bækken",
)  # fmt: skip
_ASCII = str.maketrans({"æ": "ae", "ø": "o", "å": "aa", "Æ": "Ae", "Ø": "O", "Å": "Aa"})
_DOMAINS = ("example.no", "example.com", "eksempel.no", "example.org")
_NAMES = tuple(f"{f} {last}" for f in _FIRST_NAMES for last in _LAST_NAMES)
_EMAILS = tuple(
    f"{f.translate(_ASCII).lower()}.{last.translate(_ASCII).lower()}@{d}"
    for f in _FIRST_NAMES
    for last in _LAST_NAMES
    for d in _DOMAINS
)
EDITORS = (
    "kari.nordmann@headshed.example",
    "ola.nordmann@headshed.example",
    "integrasjon@kunde.example",
    "pal.aasen@headshed.example",
    "siri.lovaas@headshed.example",
    "import@headshed.example",
    "bjorg.naess@kunde.example",
    "even.tveit@headshed.example",
)
_DAY0 = date(2019, 1, 1)
_CHANGE_DATES = tuple(str(_DAY0 + timedelta(days=i)) for i in range(2048))
_BIRTH_DATES = (
    "1948-01-01",
    *(f"{1930 + k % 76}-{1 + (k * 7) % 12:02d}-{1 + (k * 13) % 28:02d}" for k in range(1, 1024)),
)
_TEXTS = (
    "storfamilie", "233.0", "", "enslig", "par med barn", "Storgata 12", "Bjørkeveien 3 B",
    "Åsveien 17", "Kjøpt i butikk", "Ønsker ikke reklame", "Sæterbakken 4", "3", "",
    "Grønlandsleiret 9", "Ærfuglveien 2", "pensjonist",
)  # fmt: skip
_CHOICES = ("Gull", "Sølv", "Bronse", "Privat", "Bedrift", "")
_BOOLS: tuple[object, ...] = ("", True, False, True, False, True, False, True)
_CALLSTATES = ("Ny", "Ny", "Ny", "Ring tilbake", "Ring tilbake", "Ferdig", "Ferdig", "Ikke svar")
FLOW_PREFIXES = ("callflow__", "product__")
POOL_MASK = (1 << 12) - 1  # 4,096 pre-encoded variants per pool

TEXT, INTEGER, DATE, BOOLEAN, OTHER = range(5)
KIND = {"text": TEXT, "integer": INTEGER, "date": DATE, "boolean": BOOLEAN}
# Values real servers send in typed custom fields, by kind: some convert, some do not.
_ODD_VALUES: dict[int, tuple[object, ...]] = {
    TEXT: (233, 5.5, True, 1180591620717411303424),
    INTEGER: ("12", " 7 ", 7.0, 5.5, "abc", True, 1180591620717411303424, "0150", "-3"),
    DATE: ("12.05.2020", "1.2.2003", "2020-02-30", " 1999-12-31 ", "2020-02-12 10:27", 20200212),
    BOOLEAN: ("Ja", "nei", "YES", "no", 0, 1, "1", "kanskje", 2),
    OTHER: (12, True, "Gull"),
}

#: The one JSON encoder of the simulator: records, pages and error bodies.
encode = msgspec.json.Encoder().encode


def json_text(value: object) -> str:
    return encode(value).decode()


def _pair(key: str, value: object) -> str:
    return f"{json_text(key)}:{json_text(value)}"


def _tables() -> tuple[tuple[int, ...], tuple[int, ...]]:
    """Random tables for tabulation hashing, far cheaper in Python than a mixing function."""
    rng = random.Random(0xC0BE)  # noqa: S311 - fixed fake data, not secrets
    return tuple(array("Q", rng.randbytes(8 << 16))), tuple(array("Q", rng.randbytes(8 << 16)))


T0, T1 = _tables()


def _standard_pool() -> tuple[tuple[str, ...], tuple[str, ...]]:
    """Pre-encoded standard fields by pool slot: the name, and phone_2 .. update_method."""
    names: list[str] = []
    rests: list[str] = []
    for slot in range(POOL_MASK + 1):
        e = mix(slot * GOLDEN + 0x57D)
        f = mix(e)
        name = e & 1023
        values: dict[str, object] = {
            "crm__standard_info__phone_2": "" if (e >> 10) & 3 else str(22000000 + f % 1000000),
            "crm__standard_info__phone_3": (
                "" if (e >> 12) & 15 else f"+479{(f >> 20) % 10000000:07d}"
            ),
            "crm__standard_info__email": _EMAILS[name << 2 | (e >> 17) & 3] if e >> 16 & 1 else "",
            "crm__change_log__updated": _CHANGE_DATES[(e >> 19) & 2047],
            "crm__change_log__updated_by": EDITORS[(e >> 30) & 7],
            "crm__change_log__update_method": "Import" if (e >> 33) & 15 == 0 else "Manual update",
        }
        names.append(json_text(_NAMES[name]))
        rests.append(",".join(_pair(k, v) for k, v in values.items()))
    return tuple(names), tuple(rests)


def _flow_pool() -> tuple[tuple[str, ...], tuple[str, ...]]:
    """Pre-encoded call-flow fields (with a leading comma) and their call state, by slot."""
    fragments: list[str] = []
    states: list[str] = []
    for slot in range(POOL_MASK + 1):
        c = mix(slot * GOLDEN + 0xF10)
        state = _CALLSTATES[c & 7]
        values: dict[str, object] = {
            "callflow__callstate__name": state,
            "callflow__attempts_status__attempts": "" if (c >> 3) & 7 == 0 else (c >> 6) % 6,
            "callflow__last_change__when": (
                f"{_CHANGE_DATES[(c >> 9) & 2047]} {8 + (c >> 20) % 10:02d}:{(c >> 24) % 60:02d}"
            ),
            "product__BB100": "" if (c >> 30) & 3 else 1 + (c >> 32) % 3,
            "product__TV200": "" if (c >> 34) & 1 else (c >> 35) % 2,
        }
        fragments.append("," + ",".join(_pair(k, v) for k, v in values.items()))
        states.append(state)
    return tuple(fragments), tuple(states)


def _custom_value(kind: int, v: int) -> object:
    if kind == TEXT:
        return _TEXTS[v & 15]
    if kind == INTEGER:
        return "" if v % 7 == 0 else (v >> 8) % 400
    if kind == DATE:
        return "" if v % 6 == 0 else _BIRTH_DATES[(v >> 8) & 1023]
    if kind == BOOLEAN:
        return _BOOLS[v & 7]
    return _CHOICES[v % 6]


STD_NAMES, STD_REST = _standard_pool()
FLOW_FRAGMENTS, FLOW_STATES = _flow_pool()


#: How the customer id of record index i is written. Cube ids are the customer's own
#: imported ids: consecutive numbers, numbers far apart, or not numbers at all.
ID_STYLES: dict[str, tuple[Callable[[int, int], str], Callable[[int, str], int]]] = {
    "dense": (lambda start, i: str(start + i), lambda start, text: int(text) - start),
    "sparse": (
        lambda start, i: str(start + i * 40_000),
        lambda start, text: (
            (int(text) - start) // 40_000 if (int(text) - start) % 40_000 == 0 else -1
        ),
    ),
    "text": (
        lambda start, i: f"NO-{start + i:x}-K",
        lambda start, text: int(text.removeprefix("NO-").removesuffix("-K"), 16) - start,
    ),
}


def custom_pool(salt: int, specs: list[tuple[int, int]], *, messy: bool) -> tuple[str, ...]:
    """Pre-encoded custom fields (with a leading comma), by slot, for (field id, kind) specs."""
    encoded: dict[tuple[str, type, object], str] = {}
    fields = [(f"crm__custom_info__{fid}", kind, mix(salt ^ fid * GOLDEN)) for fid, kind in specs]
    pool: list[str] = []
    for slot in range(POOL_MASK + 1):
        parts: list[str] = []
        for key, kind, field_salt in fields:
            v = mix(field_salt + slot * GOLDEN)
            value = _custom_value(kind, v)
            if messy and (v >> 40) & 3 == 0:
                odd = _ODD_VALUES[kind]
                value = odd[(v >> 42) % len(odd)]
            # The type is part of the key because True == 1 for a dict.
            cache_key = (key, type(value), value)
            part = encoded.get(cache_key)
            if part is None:
                part = encoded[cache_key] = _pair(key, value)
            parts.append(part)
        pool.append("," + ",".join(parts) if parts else "")
    return tuple(pool)
