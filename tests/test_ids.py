"""An id has one form for storing, comparing and keying: what its key column holds.

Cube's ids are the customers' own imported ids, and JSON lets them come as numbers,
text or booleans. A customer's key column is text, so 5 and "5" are the same row in the
target, and so the same customer; 5.0 is "5.0", true is "true", "05" is not "5". The
same page served twice must emit no deletion records, whatever its ids look like.
"""

from __future__ import annotations

import json

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tap_cube.errors import ApiError, CubeError
from tests.conftest import read_in_process


def key_text(record_id: object) -> str:
    """The text a key column holds for an id sent as `record_id` (JSON's own spelling)."""
    if isinstance(record_id, bool):
        return "true" if record_id else "false"
    return str(record_id)


def customer(record_id: object) -> dict[str, object]:
    return {"crm__customer_id": record_id, "crm__standard_info__name": f"name of {record_id!r}"}


def config(cube, **overrides) -> dict:
    return {
        "api_url": cube.url,
        "auth_token": "tok-123456",
        "max_retries": 0,
        "assignment_ids": [7],
        "detect_deletions": True,
        **overrides,
    }


def deletions(records: list[dict]) -> list[str]:
    return [str(r["crm__customer_id"]) for r in records if r.get("_sdc_deleted_at")]


json_ids = st.one_of(
    st.integers(),
    st.integers(min_value=-3, max_value=2**33),
    st.floats(allow_nan=False, allow_infinity=False),
    st.booleans(),
    # NUL and a lone surrogate (valid JSON, no text of any database) fit no key column:
    # such an id stops the run (test below).
    st.text(st.characters(exclude_characters="\x00", exclude_categories=["Cs"]), max_size=12),
    st.from_regex(r"-?0*[0-9]{1,22}", fullmatch=True),
)


@settings(
    max_examples=120,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(
    ids=st.lists(json_ids, min_size=1, max_size=25, unique_by=key_text),
    gone=st.sets(st.integers(min_value=0, max_value=24), max_size=5),
)
def test_the_same_page_twice_deletes_nothing_whatever_the_ids(static_cube, ids, gone):
    settings_ = config(static_cube, max_deletion_share=1)
    static_cube.serve_customers(7, [customer(i) for i in ids])
    first, state = read_in_process(settings_, None)
    assert [r["crm__customer_id"] for r in first] == [key_text(i) for i in ids]
    assert deletions(first) == []

    again, state = read_in_process(settings_, state)
    assert deletions(again) == []
    assert again == first

    kept = [i for n, i in enumerate(ids) if n not in gone]
    static_cube.serve_customers(7, [customer(i) for i in kept])
    third, _ = read_in_process(settings_, state)
    removed = [key_text(i) for n, i in enumerate(ids) if n in gone]
    assert sorted(deletions(third)) == sorted(removed)


@pytest.mark.parametrize("bad", ["a\x00b", "\ud800"])
def test_an_id_no_key_column_takes_stops_the_run_with_one_line(static_cube, bad):
    static_cube.serve_customers(7, [customer("ok"), customer(bad)])
    with pytest.raises(ApiError, match=r"crm__customer_id .* cannot be keyed"):
        read_in_process(config(static_cube), None)


@pytest.mark.parametrize(
    ("first_form", "second_form"),
    [(5, "5"), ("5", 5), (12345678901, "12345678901"), (True, "true"), (-5, "-5"), (0, "0")],
)
def test_one_id_in_two_forms_in_one_list_stops_the_run_naming_both(
    static_cube, first_form, second_form
):
    static_cube.serve_customers(
        7, [customer("a"), customer(first_form), customer("b"), customer(second_form)]
    )
    with pytest.raises(CubeError) as failure:
        read_in_process(config(static_cube), None)
    message = str(failure.value)
    assert "kept changing" not in message
    assert f"crm__customer_id {json.dumps(second_form)} and another" in message
    assert f"is also {json.dumps(key_text(first_form))}" in message
    assert "assignment 7" in message


@pytest.mark.parametrize(
    "ids",
    [[-5, 0, 5, 2**40, 12], ["12", "-5", "0", 7.0]],
    ids=["numbers", "text and a float"],
)
def test_custom_field_ids_in_any_form_are_not_deleted_on_the_next_run(static_cube, ids):
    fields = [{"id": i, "key": f"Field {i}", "type": "text"} for i in ids]
    static_cube.bodies["/assignments/7/crm_custom_fields/"] = fields
    settings_ = config(static_cube)
    first, state = read_in_process(settings_, None, "customer_custom_fields")
    assert [r["id"] for r in first] == [int(i) for i in ids]
    again, _ = read_in_process(settings_, state, "customer_custom_fields")
    assert [r for r in again if r.get("_sdc_deleted_at")] == []
    del static_cube.bodies["/assignments/7/crm_custom_fields/"]


@pytest.mark.parametrize("record_id", [None, {"n": 5}, [5]], ids=["null", "object", "list"])
def test_an_id_that_fits_no_key_stops_the_run_with_one_line(static_cube, record_id):
    static_cube.serve_customers(7, [customer("a"), customer(record_id)])
    with pytest.raises(CubeError) as failure:
        read_in_process(config(static_cube), None)
    message = str(failure.value)
    assert "\n" not in message
    assert "crm__customer_id" in message
    assert "cannot be keyed" in message
