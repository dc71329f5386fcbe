"""Bodies JSON parsers disagree on, and NUL: every value kept, the page not retried."""

from __future__ import annotations

import json
import math

import msgspec
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tap_cube.api.responses import decode_body
from tap_cube.records.coercion import CATCH_ALL, CATCH_ALL_PROPERTY, JSON_TEXT, RecordCoercion
from tests.conftest import config_for, plain_assignment, run_tap

DEEP = "[" * 1000 + "]" * 1000

#: Rows as the server writes them, each with what JSON parsers disagree on.
ODD_ROWS = [
    '{"crm__customer_id": "1", "crm__standard_info__name": "\\ud800"}',
    '{"crm__customer_id": "2", "crm__custom_info__70": NaN}',
    '{"crm__customer_id": "3", "crm__custom_info__70": Infinity, "later": -Infinity}',
    '{"crm__customer_id": "4", "crm__custom_info__70": 1e309}',
    '{"crm__customer_id": "5", "deep": ' + DEEP + "}",
    '{"crm__customer_id": "6", "crm__standard_info__name": "a\\u0000b", "note\\u0000": "x"}',
    '{"crm__customer_id": "7", "_cube_json": "the server\'s own", "later": [1, NaN]}',
]


def odd_page(rows: list[str]) -> str:
    return (
        f'{{"count": {len(rows)}, "next": null, "previous": null, "results": [{", ".join(rows)}]}}'
    )


def same(a: object, b: object) -> bool:
    """Equal as JSON values, NaN equal to NaN."""
    if isinstance(a, float) and isinstance(b, float) and math.isnan(a) and math.isnan(b):
        return True
    if isinstance(a, list) and isinstance(b, list):
        return len(a) == len(b) and all(same(x, y) for x, y in zip(a, b, strict=True))
    if isinstance(a, dict) and isinstance(b, dict):
        return a.keys() == b.keys() and all(same(a[k], b[k]) for k in a)
    return type(a) is type(b) and a == b


def recovered(record: dict) -> dict:
    """The row as the server sent it, from the record: columns, catch-all and JSON text."""
    kept = dict(record.get(CATCH_ALL) or {})
    text = kept.pop(JSON_TEXT, None)
    row = {k: v for k, v in record.items() if k != CATCH_ALL and v is not None}
    row.update(kept)
    if text is not None:
        row.update(json.loads(text))
    return row


def test_odd_values_are_kept_and_the_page_is_not_retried(simulator, tmp_path):
    sim = simulator([plain_assignment(7, len(ODD_ROWS))])
    sim.fail_next("/assignments/7/customers/", 200, odd_page(ODD_ROWS), times=2)
    run = run_tap(config_for(sim, [7], max_retries=3), tmp_path)
    assert run.returncode == 0, run.stderr[-3000:]
    assert "retry" not in run.stderr.lower()
    customer_pages = [r for r in sim.requests if r.path.endswith("/assignments/7/customers/")]
    assert len(customer_pages) == 2  # discovery's sample, then the sync: never again
    records = {r["crm__customer_id"]: r for r in run.records()}
    assert set(records) == {str(n) for n in range(1, len(ODD_ROWS) + 1)}
    for text in ODD_ROWS:
        sent = json.loads(text) if "deep" not in text else None
        record = records[json.loads(text.split(",")[0] + "}")["crm__customer_id"]]
        if sent is None:
            assert json.loads(record[CATCH_ALL][JSON_TEXT].replace(DEEP, "null")) == {"deep": None}
            assert DEEP in record[CATCH_ALL][JSON_TEXT]
            continue
        assert same(recovered(record) | {"assignment_id": 7}, sent | {"assignment_id": 7}), (
            record,
            sent,
        )
    assert records["1"]["crm__standard_info__name"] is None
    assert records["2"]["crm__custom_info__70"] is None
    assert "_cube_json" in run.stderr  # the warning says where the values went


def test_a_body_cut_short_is_still_retried(simulator, tmp_path):
    sim = simulator([plain_assignment(7, 3)])
    sim.fail_next("/assignments/7/customers/", 200, odd_page(ODD_ROWS)[:-5], times=20)
    run = run_tap(config_for(sim, [7], max_retries=1), tmp_path)
    assert run.returncode == 1
    assert "giving up" in run.last_stderr_line
    assert "invalid JSON" in run.last_stderr_line


ODD_LITERALS = st.sampled_from(
    [
        "NaN",
        "Infinity",
        "-Infinity",
        "1e309",
        "-1e400",
        '"\\ud800"',
        '"x\\udfffy"',
        '"a\\u0000b"',
        '"\\u0000"',
        "[" * 150 + "]" * 150,
        '[1, {"k": NaN}]',
        '{"n\\u0000": 1}',
    ]
)
PLAIN = st.recursive(
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(), inner, max_size=3),
    max_leaves=8,
)
BLANK_IS_NULL = {"count", "extra"}
FIELDS = ["name", "count", "extra", "undeclared", "_cube_json", "_cube_unparsed"]
PROPERTIES = {
    "crm__customer_id": {"type": "string"},
    "name": {"type": ["string", "null"]},
    "count": {"type": ["integer", "null"]},
    "extra": {"type": ["object", "null"]},
    **CATCH_ALL_PROPERTY,
}


#: Plain values per field; declared fields get values of their type (others are converted,
#: as the README's Values table says, which is not what this test is about).
PLAIN_OF = {
    "name": st.text() | st.none(),
    "count": st.integers(-(2**63), 2**63 - 1) | st.none(),
}


@st.composite
def server_rows(draw: st.DrawFn) -> str:
    members = ['"crm__customer_id": "1"']
    for field in draw(st.lists(st.sampled_from(FIELDS), unique=True)):
        plain = PLAIN_OF.get(field, PLAIN)
        value = draw(ODD_LITERALS) if draw(st.booleans()) else json.dumps(draw(plain))
        members.append(f"{json.dumps(field)}: {value}")
    return "{" + ", ".join(members) + "}"


@settings(max_examples=300, suppress_health_check=[HealthCheck.too_slow], deadline=None)
@given(st.lists(server_rows(), min_size=1, max_size=4))
def test_any_body_is_decoded_kept_whole_and_storable(rows):
    body = odd_page(rows).encode()
    page = decode_body(body, paginated=True)
    fit = RecordCoercion(PROPERTIES)
    for text, row in zip(rows, page["results"], strict=True):
        row = dict(row)
        fit.set_aside_owned(row, [CATCH_ALL], {})  # as every stream does first
        record = fit(row)
        encoded = msgspec.json.encode(record)  # no lone surrogate, or this fails
        assert "\x00" not in json.dumps(json.loads(encoded), ensure_ascii=False)  # PostgreSQL
        # Null says nothing, nor do blanks in a typed field (Values: "Blank").
        sent = {
            k: v
            for k, v in json.loads(text).items()
            if v is not None and not (k in BLANK_IS_NULL and isinstance(v, str) and not v.strip())
        }
        assert same(recovered(json.loads(encoded)), sent), (text, record)
