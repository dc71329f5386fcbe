"""The id set used for de-duplication is exact whatever the ids look like."""

from __future__ import annotations

import random

import pytest

from tap_cube.records.seen import SeenIds


@pytest.mark.parametrize(
    "make_id",
    [
        lambda i: str(100_000 + i),  # dense
        lambda i: str(40_000 * i + 7),  # sparse, beyond 2**32
        lambda i: f"K-{i * 7919:09d}x",  # not numeric
        lambda i: str(i).zfill(8),  # leading zeros: not the number
    ],
    ids=["dense", "sparse", "text", "zero-padded"],
)
def test_exact_membership(make_id):
    with SeenIds() as seen:
        ids = [make_id(i) for i in range(30_000)]
        assert all(seen.add(record_id) for record_id in ids)
        assert not any(seen.add(record_id) for record_id in ids[::7])
        assert len(seen) == len(ids)


def test_hash_collisions_never_drop_an_id():
    # Equal low 32 bits: the same 32-bit hash, different ids.
    colliding = [str((k << 32) + 5) for k in range(1, 2000)]
    with SeenIds() as seen:
        assert all(seen.add(record_id) for record_id in colliding)
        assert not seen.add(colliding[100])
        assert len(seen) == len(colliding)


def test_forms_of_an_id():
    with SeenIds() as seen:
        assert seen.add("123")
        assert not seen.add(123)  # the same number
        assert seen.add("0123")  # a different id to Cube
        assert seen.add("123 ")
        assert seen.add(str(2**70))  # beyond 64 bits: kept as text
        assert not seen.add(str(2**70))
        assert not seen.add(None)
        assert seen.add(("7", "2024-01-01T10:00:00+01:00"))  # a compound identity
        assert not seen.add(("7", "2024-01-01T10:00:00+01:00"))


def test_random_mix_matches_a_python_set():
    rng = random.Random(4)
    reference: set[str] = set()
    with SeenIds() as seen:
        for _ in range(50_000):
            kind = rng.randrange(3)
            if kind == 0:
                record_id = str(rng.randrange(1, 10**6))
            elif kind == 1:
                record_id = str(rng.randrange(1, 2**62))
            else:
                record_id = f"x{rng.randrange(10**5)}"
            assert seen.add(record_id) == (record_id not in reference)
            reference.add(record_id)
        assert len(seen) == len(reference)
