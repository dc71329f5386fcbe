"""The generated part of call outcomes and product registrations.

Outcome k of a campaign's day is a customer of the campaign's container (picked by a hash
of campaign, day and k) with what an agent reported: a result, a comment, a timestamp in
working hours, the product sold. Rows added by tests are submitted in the evening.
"""

from __future__ import annotations

from datetime import date, timedelta
from typing import TYPE_CHECKING

from cube_simulator.container import anonymize
from cube_simulator.fake_values import EDITORS, GOLDEN, mix

if TYPE_CHECKING:
    from cube_simulator.campaigns import Campaign
    from cube_simulator.container import Snapshot

_OUTCOME_TYPES = (
    "Salg", "Salg", "Salg", "Ikke interessert", "Ikke interessert", "Ikke interessert",
    "Ring tilbake", "Feil nummer",
)  # fmt: skip
_OUTCOME_SUBTYPES = {
    "Salg": ("Nytt abonnement", "Oppgradering", "Mersalg"),
    "Ikke interessert": ("Har allerede", "For dyrt", "Ønsker ikke å oppgi grunn", ""),
    "Ring tilbake": ("Ring i kveld", "Ring neste uke"),
    "Feil nummer": ("",),
}
_COMMENTS = (
    "",
    "",
    "Kunden var fornøyd med tilbudet.",
    "Ønsker å bli ringt etter klokka 18.",
    "Vil tenke på det, snakker med ektefellen først.",
    "Hadde ikke tid, ba om å få tilbudet på e-post.",
    "Bytter fra konkurrent når bindingstiden går ut i vår.",
    "Sa nei takk på første spørsmål.",
)
_PRODUCTS = ("Bredbånd 100", "Bredbånd 500", "TV Familie", "Mobil 10 GB")
_BINDING = ("", "12 mnd", "24 mnd", "")
_PROXY_ORIGIN = "http://cube-internal.proxy.local:8080"
_NEXT_STYLES = ("foreign", "http", "same", "cursor")
_PRODUCT_CATALOG = (
    ("BB100", "Bredbånd 100", 499),
    ("BB500", "Bredbånd 500", 699),
    ("TVF", "TV Familie", 399),
    ("MOB10", "Mobil 10 GB", 299),
)


def _oslo_offset(day: date) -> str:
    """UTC offset of Europe/Oslo in working hours of `day` (no tzdata needed), as Cube
    writes it: without a colon ("+0100")."""

    def last_sunday(month: int) -> date:
        d = date(day.year, month, 31)
        return d - timedelta(days=(d.weekday() + 1) % 7)

    return "+0200" if last_sunday(3) <= day < last_sunday(10) else "+0100"


def _outcome_hash(camp: Campaign, day: date, k: int) -> int:
    return mix(camp.salt + day.toordinal() * GOLDEN + k * 0x51ED27)


def generated_outcome(
    camp: Campaign, snap: Snapshot, day: date, k: int, per_day: int
) -> dict[str, object]:
    """Outcome k of `day`: rows 0 .. per_day-1 are generated, later ones added by tests."""
    h = _outcome_hash(camp, day, k)
    idx = snap.first + (h % snap.size if snap.size else 0)
    rec = camp.container.customer(idx, snap.overrides)
    if k < per_day and (h >> 59) & 7 == 0:
        # One in eight customers has since been anonymized (their rows stay: real sales).
        anonymize(rec)
    if k < per_day:  # spread over working hours, in order of k
        slot = 600 // per_day
        minute = 480 + k * slot + (h >> 20) % slot
    else:  # added later: in the evening, after the generated ones
        minute = 1140 + min(k - per_day, 299)
    stamp = f"{day} {minute // 60:02d}:{minute % 60:02d}"
    kind = _OUTCOME_TYPES[(h >> 40) & 7]
    subtypes = _OUTCOME_SUBTYPES[kind]
    rec["call_outcome__type"] = kind
    rec["call_outcome__subtype"] = subtypes[(h >> 44) % len(subtypes)]
    rec["call_outcome__comment"] = _COMMENTS[(h >> 48) & 7]
    rec["call_outcome__report_as__submitted_by"] = EDITORS[(h >> 36) & 7]
    rec["call_outcome__report_as__submitted_in_team"] = "Default"
    rec["call_outcome__report_as__submitted_when"] = stamp
    # As CallOutcomes.md shows it: milliseconds, and an offset without a colon.
    rec["call_outcome__report_as__submitted_when_timestamp"] = (
        f"{day}T{stamp[11:]}:{(h >> 32) % 60:02d}.{(h >> 8) % 1000:03d}{_oslo_offset(day)}"
    )
    rec["call_outcome__extra__Produkt"] = _PRODUCTS[(h >> 52) & 3] if kind == "Salg" else ""
    rec["call_outcome__extra__Bindingstid"] = _BINDING[(h >> 54) & 3] if kind == "Salg" else ""
    rec["call_outcome__extra__Ønsket oppstart"] = (
        str(day + timedelta(days=14 + (h >> 56) % 30)) if kind == "Salg" else ""
    )
    rec["call_outcome__additional_input_text"] = (
        f"Followup time: Between {day:%d.%m.%Y} 08:00 and {day:%d.%m.%Y} 21:00 \n"
        if kind == "Ring tilbake"
        else ""
    )
    rec["campaign__name"] = camp.row["campaign__name"]
    if "campaign__crm_type" in camp.row:
        rec["campaign__crm_type"] = camp.row["campaign__crm_type"]
        rec["data_owner__name"] = camp.row["data_owner__name"]
    rec["segment__name"] = camp.segments[(h >> 62) & 1]
    return rec


def product_row(outcome: dict[str, object], product: dict[str, object]) -> dict[str, object]:
    """A product registration: its sale's outcome row and the product, with only the local
    minute of the sale, as Products.md shows them (no `…_submitted_when_timestamp`)."""
    row = {**outcome, **product}
    if "call_outcome__report_as__submitted_when_timestamp" not in product:
        row.pop("call_outcome__report_as__submitted_when_timestamp", None)
    return row


def generated_products(
    camp: Campaign, day: date, k: int, outcome: dict[str, object]
) -> list[dict[str, object]]:
    """The product registrations of outcome k of `day`: one or two per sale."""
    if outcome["call_outcome__type"] != "Salg":
        return []
    p = mix(_outcome_hash(camp, day, k) ^ 0x9F0D)
    rows = []
    # Two of the same product happen (two mobile subscriptions in one call).
    for i in range(1 + (p & 1)):
        code, title, price = _PRODUCT_CATALOG[(p >> (2 + 2 * i)) & 3]
        product: dict[str, object] = {
            "product__code": code,
            "product__title": title,
            "product__price": price,
            "product__extra__Bindingstid": _BINDING[(p >> (8 + 2 * i)) & 3],
            "product__extra__Antall": "" if (p >> 12) & 1 else 1 + (p >> 13) % 3,
        }
        rows.append(product_row(outcome, product))
    return rows
