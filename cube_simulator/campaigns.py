"""Campaigns: two per assignment and two per data owner's CRM, each calling its customers."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from cube_simulator.fake_values import GOLDEN, mix

if TYPE_CHECKING:
    from cube_simulator.container import Container
    from cube_simulator.store import Store


@dataclass
class Campaign:
    id: int
    container: Container
    row: dict[str, object]
    segments: tuple[str, str]
    salt: int


class Campaigns:
    """The campaigns by id, with their rows as /campaigns serves them."""

    def __init__(self, store: Store, seed: int) -> None:
        self._store = store
        self.lock = store.lock  # guards the rows, and the outcomes of the campaigns
        self._seed = seed
        self.by_id: dict[int, Campaign] = {}
        for aid, c in store.assignments.items():
            for k in (1, 2):
                cid = aid * 10 + k
                active: object = True if k == 1 else (False if aid % 2 == 0 else "")
                row: dict[str, object] = {
                    "campaign__id": cid,
                    "campaign__name": f"{'Vår' if k == 1 else 'Høst'}kampanje oppdrag {aid}",
                    "campaign__start_date": "2020-01-01" if k == 1 else "2021-08-15",
                    "campaign__end_date": "" if k == 1 else "2027-06-30",
                    "campaign__archived_date": "" if k == 1 or aid % 2 else "2026-11-01",
                    "campaign__is_active": active,
                    "assignment__id": aid,
                    "assignment__name": f"Oppdrag {aid} - Bredbånd og TV",
                    "client__id": 1 + aid % 5,
                    "client__short_name": f"Kunde {1 + aid % 5}",
                }
                self._add(cid, c, row)
        for (owner, crm_type), c in store.crms.items():
            for k in (1, 2):
                cid = 1_000_000 + owner * 10 + (0 if crm_type == "B2C" else 4) + k
                row = {
                    "campaign__id": cid,
                    "campaign__name": f"{crm_type} {'vinter' if k == 1 else 'sommer'} {owner}",
                    "campaign__start_date": "2024-01-01",
                    "campaign__end_date": "",
                    "campaign__archived_date": "",
                    "campaign__is_active": k == 1,
                    "campaign__crm_type": crm_type,
                    "data_owner__id": owner,
                    "data_owner__name": f"Dataeier {owner} AS",
                    "service__id": owner * 10 + k,
                    "service__name": f"Telefonsalg {owner}-{k}",
                }
                self._add(cid, c, row)

    def _add(self, cid: int, c: Container, row: dict[str, object]) -> None:
        name = row["campaign__name"]
        self.by_id[cid] = Campaign(
            id=cid,
            container=c,
            row=row,
            segments=(f"{name} - nye kunder", f"{name} - eksisterende kunder"),
            salt=mix(self._seed * 0x100000001B3 + cid * GOLDEN + 7),
        )

    def rows(self) -> list[dict[str, object]]:
        # Forbidden data owners' CRMs are listed (that is how a user finds them).
        return [dict(x.row) for x in self.by_id.values() if self._listed(x)]

    @staticmethod
    def _listed(camp: Campaign) -> bool:
        return camp.container.access == "ok" or camp.container.key[0] == "data_owner"

    def update(self, campaign_id: int, changes: dict[str, object]) -> None:
        with self.lock:
            camp = self.by_id[campaign_id]
            camp.row = {**camp.row, **changes}

    def of_container(self, container: Container) -> list[Campaign]:
        return [c for c in self.by_id.values() if c.container is container]

    def of(self, spec: int | tuple[int, str] | None) -> list[Campaign]:
        """A campaign, the campaigns of a data owner's CRM, or (None) every accessible one."""
        if isinstance(spec, int):
            return [self.by_id[spec]]
        if spec is None:
            return [c for c in self.by_id.values() if c.container.access == "ok"]
        return self.of_container(self._store.container(spec))
