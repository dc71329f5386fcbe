"""A container of customers (an assignment, or one CRM of a data owner) in memory.

Records are never stored: each one is derived from (container, index, seed), so an
assignment of a million customers costs no memory; only edited customers are kept, as
overrides, copied on write so that a request paging through a snapshot sees one state.
"""

from __future__ import annotations

from array import array
from typing import TYPE_CHECKING, NamedTuple

import msgspec

from cube_simulator.fake_values import (
    FLOW_FRAGMENTS,
    FLOW_PREFIXES,
    FLOW_STATES,
    ID_STYLES,
    KIND,
    OTHER,
    POOL_MASK,
    STD_NAMES,
    STD_REST,
    T0,
    T1,
    TEXT,
    custom_pool,
    json_text,
    mix,
)

if TYPE_CHECKING:
    from collections.abc import Callable, Iterable, Mapping

    from cube_simulator.model import CustomField


def anonymize(record: dict[str, object], fields: Mapping[str, object] | None = None) -> None:
    """Blank a customer's fields as Cube does for an anonymized customer (of `fields`)."""
    for name in fields if fields is not None else list(record):
        if name.startswith("crm__"):
            record[name] = ""
    record["crm__standard_info__name"] = "Anonymized"


class Snapshot(NamedTuple):
    """A consistent view of a container's mutable state (overrides are copy-on-write)."""

    first: int
    size: int
    overrides: Mapping[int, dict[str, object]]
    version: int


_decode_record = msgspec.json.Decoder(dict[str, object]).decode


class Container:
    """A list of customers: an assignment, or one CRM of a data owner.

    Position p of the list is the record with index ``first + p``; the index fixes the
    customer id and all generated values, so growing or shrinking at either end keeps
    every remaining customer as it was.

    Records are rendered straight to JSON text from pools of pre-encoded fragments
    (standard fields, custom fields, call-flow fields), picked by bits of a hash of the
    index; that keeps a 500-row page around a millisecond. The dict form is the decoded
    text, so both forms always agree.
    """

    def __init__(
        self,
        key: tuple[str, int, str],
        *,
        count: int,
        custom_fields: list[CustomField],
        unlisted_fields: list[int],
        customer_id_start: int,
        customer_id_style: str = "dense",
        metadata: str,
        access: str,
        salt: int,
        messy: bool = False,
    ) -> None:
        self.key = key
        self.first = 0
        self.count = count
        self.custom_fields = list(custom_fields)
        self.metadata = metadata
        self.access = access
        self.messy = messy
        self.customer_id_start = customer_id_start
        self.id_text, self._id_index = ID_STYLES[customer_id_style]
        self.overrides: dict[int, dict[str, object]] = {}
        self.version = 0
        self._salt = salt
        self._flow_salt = mix(salt ^ 0xC0FFEE)
        specs = [(cf.id, KIND.get(cf.type, OTHER)) for cf in custom_fields]
        self._specs = sorted(specs + [(fid, TEXT) for fid in unlisted_fields])
        self._custom_pool: tuple[str, ...] | None = None
        self._state_index: dict[tuple[int, str], array[int]] = {}

    def snapshot(self) -> Snapshot:
        return Snapshot(self.first, self.count, self.overrides, self.version)

    def index_of(self, customer_id: str) -> int:
        try:
            idx = self._id_index(self.customer_id_start, customer_id)
        except ValueError:
            idx = self.first - 1
        if not self.first <= idx < self.first + self.count:
            raise KeyError(f"no customer {customer_id!r} in {self.key}")
        return idx

    def custom_pool(self) -> tuple[str, ...]:
        """Pre-encoded custom fields (with a leading comma), by slot; built on first use."""
        if self._custom_pool is None:
            self._custom_pool = custom_pool(self._salt, self._specs, messy=self.messy)
        return self._custom_pool

    def renderer(self) -> Callable[[int], str]:
        """A function from index to the record's JSON text (the hot path: keep it lean)."""
        t0, t1, salt, start = T0, T1, self._salt, self.customer_id_start
        id_text = self.id_text
        names, rests, custom = STD_NAMES, STD_REST, self.custom_pool()

        def render(idx: int) -> str:
            x = idx ^ salt
            h = t0[x & 0xFFFF] ^ t1[(x >> 16) & 0xFFFF] ^ salt
            slot = h & 0xFFF
            r = h >> 24
            phone = (
                f'"{(90000000 if r & 8 else 40000000) + (r >> 4) % 10000000}"' if r & 7 else '""'
            )
            return (
                f'{{"crm__customer_id":"{id_text(start, idx)}",'
                f'"crm__standard_info__name":{names[slot]},'
                f'"crm__standard_info__phone_1":{phone},{rests[slot]}{custom[(h >> 12) & 0xFFF]}}}'
            )

        return render

    def _flow_slot(self, idx: int) -> int:
        x = idx ^ self._flow_salt
        return (T0[x & 0xFFFF] ^ T1[(x >> 16) & 0xFFFF]) & POOL_MASK

    def flow_renderer(self) -> Callable[[int], str]:
        """As renderer(), for call-flow rows (the customer plus call-flow fields)."""
        render, slot = self.renderer(), self._flow_slot

        def render_flow(idx: int) -> str:
            return f"{render(idx)[:-1]}{FLOW_FRAGMENTS[slot(idx)]}}}"

        return render_flow

    def customer(self, idx: int, overrides: Mapping[int, dict[str, object]]) -> dict[str, object]:
        rec = _decode_record(self.renderer()(idx))
        changes = overrides.get(idx)
        if changes:
            rec.update((k, v) for k, v in changes.items() if not k.startswith(FLOW_PREFIXES))
        return rec

    def callflow(self, idx: int, overrides: Mapping[int, dict[str, object]]) -> dict[str, object]:
        rec = _decode_record(self.flow_renderer()(idx))
        changes = overrides.get(idx)
        if changes:
            rec.update(changes)
        return rec

    def page(self, snap: Snapshot, indices: Iterable[int], *, flow: bool) -> bytes:
        """The JSON array of the records at `indices` (ordinary or call-flow rows)."""
        render = self.flow_renderer() if flow else self.renderer()
        overrides = snap.overrides
        if overrides:
            edited = self.callflow if flow else self.customer
            rows = [
                json_text(edited(i, overrides)) if i in overrides else render(i) for i in indices
            ]
        else:
            rows = [render(i) for i in indices]
        return f"[{','.join(rows)}]".encode()

    def state_indices(self, snap: Snapshot, state: str) -> array[int]:
        """Indices of the records in call state `state`, in list order (cached per version)."""
        cached = self._state_index.get((snap.version, state))
        if cached is not None:
            return cached
        found: array[int] = array("q")
        overrides = snap.overrides
        for idx in range(snap.first, snap.first + snap.size):
            changes = overrides.get(idx)
            if changes and "callflow__callstate__name" in changes:
                current = changes["callflow__callstate__name"]
            else:
                current = FLOW_STATES[self._flow_slot(idx)]
            if current == state:
                found.append(idx)
        if len(self._state_index) >= 8:
            self._state_index.clear()
        self._state_index[(snap.version, state)] = found
        return found
