"""How a record is keyed within its partition: for de-duplication, the delivered ids in
state and deletion records alike.

A keyer is made fresh for each read of a partition (`RecordPath.keyer`), since a key may
depend on the records before it.
"""

from __future__ import annotations

import typing as t
from collections import Counter
from functools import partial

from tap_cube.records.converters import UNFIT

if t.TYPE_CHECKING:
    from collections.abc import Callable, Sequence

    from tap_cube.records.coercion import RecordCoercion

Record = dict[str, t.Any]


def id_keyer_of(
    field: str | None, coercion: RecordCoercion
) -> Callable[[], Callable[[Record], object]]:
    """Makes the keyer of a read: `field` as `coercion` fits it into its key column."""
    fit = coercion.converters.get(field) if field is not None else None
    kind = {"text": str, "integer": int}.get(coercion.kinds[field]) if field and fit else None
    return partial(id_keyer, field, fit, kind)


def id_keyer(
    field: str | None, fit: Callable[[object], object] | None, kind: type | None
) -> Callable[[Record], object]:
    """The key of a record: its `field` as its key column will hold it (None: the record
    lacks it).

    Ids that the target stores in one row are one id (5 and "5" in a text column; 5,
    "5" and 5.0 in an integer column). `fit` makes an id of its column's `kind`; an id
    that fits no column is returned as sent, and coercion then stops the run.
    """
    if field is None:
        return lambda record: None
    if fit is None:
        return lambda record: record.get(field)

    def key_of(record: Record) -> object:
        sent = record.get(field)
        # Ids already of their column's type are their own key: the usual case, cheaply.
        if sent is None or type(sent) is kind:
            return sent
        key = fit(sent)
        return sent if key is UNFIT else key

    return key_of


def numbering_keyer(
    customer_field: str, submitted_fields: Sequence[str], number_field: str
) -> Callable[[Record], object]:
    """The key of a row without an id: its customer, the time it was submitted (the first
    of `submitted_fields` it has) and which of the rows sharing both it is, in the
    server's order. That number is written into the row's `number_field`.

    Rows sharing a customer and a second always arrive in the same read (a day window),
    so they are numbered the same way on every run and every read.
    """
    numbered: Counter[tuple[object, object]] = Counter()

    def number_and_key(record: Record) -> object:
        customer = record.get(customer_field)
        submitted = next((record[f] for f in submitted_fields if record.get(f)), None)
        if customer is None or not submitted:
            return None
        same = (customer, submitted)
        numbered[same] += 1
        record[number_field] = numbered[same]
        return (customer, submitted, numbered[same])

    return number_and_key
