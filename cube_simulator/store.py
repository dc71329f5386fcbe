"""The simulator's customers: its containers, looked up, read and changed under one lock."""

from __future__ import annotations

import threading
from typing import TYPE_CHECKING

from cube_simulator.container import Container
from cube_simulator.fake_values import GOLDEN, mix

if TYPE_CHECKING:
    from cube_simulator.container import Snapshot
    from cube_simulator.model import Assignment, Crm

#: An assignment id, or (data owner id, CRM type) for a data owner's CRM.
ContainerKey = int | tuple[int, str]


class Store:
    """Every container of customers, and the lock that guards all mutable simulator state."""

    def __init__(self, assignments: list[Assignment], crms: list[Crm], seed: int) -> None:
        # One lock for container state, outcome edits, faults, the page cache and the
        # request log: a snapshot of a container and the outcome edits then always agree.
        self.lock = threading.Lock()
        self.assignments: dict[int, Container] = {}
        self.crms: dict[tuple[int, str], Container] = {}
        for a in assignments:
            self.assignments[a.id] = Container(
                ("assignment", a.id, ""),
                count=a.count,
                custom_fields=a.custom_fields,
                unlisted_fields=a.unlisted_fields,
                customer_id_start=a.customer_id_start,
                customer_id_style=a.customer_id_style,
                metadata=a.metadata,
                access=a.access,
                messy=a.messy,
                salt=mix(seed * 0x100000001B3 + a.id * GOLDEN + 1),
            )
        for crm in crms:
            crm_type = crm.crm_type.upper()
            self.crms[(crm.data_owner_id, crm_type)] = Container(
                ("data_owner", crm.data_owner_id, crm_type),
                count=crm.count,
                custom_fields=crm.custom_fields,
                unlisted_fields=[],
                customer_id_start=crm.customer_id_start,
                metadata="ok",
                access=crm.access,
                salt=mix(
                    seed * 0x100000001B3 + crm.data_owner_id * GOLDEN + 2 + (crm_type == "B2B")
                ),
            )

    def container(self, key: ContainerKey) -> Container:
        found = (
            self.assignments.get(key)
            if isinstance(key, int)
            else self.crms.get((key[0], key[1].upper()))
        )
        if found is None:
            raise KeyError(f"no such container: {key!r}")
        return found

    def snapshot(self, c: Container) -> Snapshot:
        with self.lock:
            return c.snapshot()

    def customers(self, key: ContainerKey) -> list[dict[str, object]]:
        c = self.container(key)
        snap = self.snapshot(c)
        return [c.customer(snap.first + p, snap.overrides) for p in range(snap.size)]

    def callflow_customers(
        self, key: ContainerKey, call_state: str | None
    ) -> list[dict[str, object]]:
        c = self.container(key)
        snap = self.snapshot(c)
        rows = [c.callflow(snap.first + p, snap.overrides) for p in range(snap.size)]
        if call_state:
            rows = [r for r in rows if r["callflow__callstate__name"] == call_state]
        return rows

    def update(self, key: ContainerKey, customer_id: str, changes: dict[str, object]) -> None:
        c = self.container(key)
        with self.lock:
            idx = c.index_of(customer_id)
            merged = {**c.overrides.get(idx, {}), **changes}
            # Copy on write, so snapshots taken by in-flight requests stay consistent.
            c.overrides = {**c.overrides, idx: merged}
            c.version += 1

    def set_count(self, key: ContainerKey, count: int, at: str) -> None:
        c = self.container(key)
        if count < 0 or at not in ("start", "end"):
            raise ValueError("count must be >= 0 and `at` 'start' or 'end'")
        with self.lock:
            if at == "start":
                c.first += c.count - count
            c.count = count
            c.version += 1

    def set_access(self, key: ContainerKey, access: str) -> None:
        if access not in ("ok", "forbidden"):
            raise ValueError("access must be 'ok' or 'forbidden'")
        with self.lock:
            self.container(key).access = access
