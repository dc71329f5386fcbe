"""`tap-cube --test`: one line per stream checked, and ERROR only for what is an error."""

from __future__ import annotations

import datetime as dt
import json
import re

from cube_simulator import demo_assignments
from tests.conftest import config_for, run_tap

LINE = re.compile(r"Connection test: stream (\S+) (.*)$", re.MULTILINE)


def test_each_stream_says_what_it_read_and_nothing_is_an_error(simulator, tmp_path):
    sim = simulator(demo_assignments())
    start = (sim.today() - dt.timedelta(days=3)).isoformat()
    config = config_for(sim, [101, 202, 303], start_date=start)
    run = run_tap(config, tmp_path, "--test")
    assert run.returncode == 0, run.stderr
    assert "ERROR" not in run.stderr
    checked = dict(LINE.findall(run.stderr))
    offered = run_tap(config, tmp_path, "--discover")
    streams = {s["tap_stream_id"] for s in json.loads(offered.stdout)["streams"]}
    assert set(checked) == streams
    assert len(LINE.findall(run.stderr)) == len(streams)  # one line each
    assert checked["customers"] == "OK: read its first record"
    assert checked["call_outcomes"] == "OK: read its first record"


def test_a_stream_that_fails_is_an_error(simulator, tmp_path):
    sim = simulator(demo_assignments())
    config = config_for(sim, [101], max_retries=0)
    sim.fail_next("campaigns", 400, json.dumps({"detail": "Ugyldig forespørsel."}), times=5)
    run = run_tap(config, tmp_path, "--test")
    assert run.returncode != 0
    assert "An unhandled error occurred while syncing 'campaigns'" in run.stderr
    assert "Ugyldig forespørsel." in run.stderr.strip().splitlines()[-1]
