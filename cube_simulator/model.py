"""The simulator's public data: what it serves (assignments and data owners' CRMs with
their custom fields, and the demo data set) and what it logs of each request."""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass
class CustomField:
    """A tenant-defined customer field, as listed by ``crm_custom_fields``."""

    id: int
    key: str  # human label, e.g. "Birth date"
    type: str  # "text", "integer", "date", "boolean"; anything else is served as strings


@dataclass
class Assignment:
    """An assignment-era container of customers."""

    id: int
    count: int
    custom_fields: list[CustomField] = field(default_factory=list)
    # "ok" | "forbidden" (403 on crm_custom_fields) | "missing" (404 on it)
    # | "legacy" (metadata rows omit lookup__id)
    metadata: str = "ok"
    # Custom field ids present in the records but not in the metadata.
    unlisted_fields: list[int] = field(default_factory=list)
    # crm__customer_id of record i is str(customer_id_start + i), or see ID_STYLES.
    customer_id_start: int = 100000
    customer_id_style: str = "dense"
    access: str = "ok"  # "ok" | "forbidden" (403 on every endpoint of the assignment)
    # About one custom value in four is odd for its type ("12" or "abc" in an integer
    # field, "12.05.2020" or "2020-02-30" in a date field, "Ja" in a boolean field).
    messy: bool = False


@dataclass
class Crm:
    """A data-owner-era container of customers: one CRM (B2C or B2B) of a data owner."""

    data_owner_id: int
    crm_type: str  # "B2C" | "B2B"
    count: int
    custom_fields: list[CustomField] = field(default_factory=list)
    customer_id_start: int = 500000
    # "ok" | "forbidden": its campaigns are listed in /campaigns, but every endpoint of
    # the CRM (and its campaigns' outcomes and product registrations) answers 403.
    access: str = "ok"


@dataclass(frozen=True)
class RequestRecord:
    """One request the simulator answered (the credential itself is never kept)."""

    method: str
    path: str
    query: str  # raw query string, "" when absent
    status: int  # 0 when the connection was reset without an answer
    has_authorization: bool
    time: float  # time.time() when the request arrived


def demo_assignments() -> list[Assignment]:
    """The default data set.

    101: 2,137 customers, five listed custom fields (text, integer, date, boolean, choice)
         and one unlisted field (75).
    202: exactly 1,000 customers (two full pages) whose field 70 is "text" where 101 says
         "integer"; customer ids overlap with 101's, as they do across real assignments.
    303: no customers.
    """
    return [
        Assignment(
            id=101,
            count=2137,
            custom_fields=[
                CustomField(64, "Address street", "text"),
                CustomField(70, "Antall i husstanden", "integer"),
                CustomField(71, "Fødselsdato", "date"),
                CustomField(72, "Reservert mot telefonsalg", "boolean"),
                CustomField(73, "Kundetype", "choice"),
            ],
            unlisted_fields=[75],
        ),
        Assignment(
            id=202,
            count=1000,
            custom_fields=[
                CustomField(70, "Antall i husstanden", "text"),
                CustomField(81, "Antall abonnement", "integer"),
            ],
        ),
        Assignment(id=303, count=0, custom_fields=[CustomField(64, "Address street", "text")]),
    ]
