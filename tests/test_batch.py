"""batch_config: BATCH files instead of RECORD messages, with the same rows in them."""

from __future__ import annotations

import gzip
import json
from urllib.parse import urlparse

import pytest

from cube_simulator import demo_assignments
from tests.conftest import config_for, run_tap
from tests.test_errors import assert_fails_with


def batch_config(root) -> dict:
    return {
        "encoding": {"format": "jsonl", "compression": "gzip"},
        "storage": {"root": f"file://{root}"},
    }


def batch_rows(run, stream: str) -> list[dict]:
    rows = []
    for message in run.messages:
        if message["type"] == "BATCH" and message["stream"] == stream:
            for url in message["manifest"]:
                with gzip.open(urlparse(url).path, "rt", encoding="utf-8") as lines:
                    rows += [json.loads(line) for line in lines]
    return rows


def test_batch_files_hold_the_rows_records_carry(simulator, tmp_path):
    sim = simulator(demo_assignments())
    config = config_for(sim, [101, 202, 303])
    records = run_tap(config, tmp_path)
    assert records.returncode == 0, records.stderr
    batched = run_tap({**config, "batch_config": batch_config(tmp_path / "files")}, tmp_path)
    assert batched.returncode == 0, batched.stderr
    assert "unknown setting" not in batched.stderr  # an SDK setting, not a misspelt one
    assert not batched.records()
    key = ("assignment_id", "crm__customer_id")
    assert sorted(batch_rows(batched, "customers"), key=lambda r: [r[k] for k in key]) == sorted(
        records.records(), key=lambda r: [r[k] for k in key]
    )
    assert len(batch_rows(batched, "customers")) == 2137 + 1000


@pytest.mark.parametrize(
    "mapping",
    [
        {"stream_maps": {"customers": {"crm__standard_info__email": "__NULL__"}}},
        {"flattening_enabled": True, "flattening_max_depth": 1},
    ],
    ids=["stream_maps", "flattening"],
)
def test_batch_with_maps_is_refused_before_a_row_escapes_them(simulator, tmp_path, mapping):
    """The SDK writes BATCH files from the unmapped records: an e-mail address a map
    removes from the schema would still reach the warehouse."""
    sim = simulator(demo_assignments())
    config = {**config_for(sim, [101]), "batch_config": batch_config(tmp_path / "files"), **mapping}
    run = run_tap(config, tmp_path)
    assert_fails_with(run, "batch_config", next(iter(mapping)), "BATCH files")
    assert not (tmp_path / "files").exists()
