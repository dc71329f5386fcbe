"""A run that is stopped says so: the conventional exit status, one last line, no traceback."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from tests.conftest import config_for, plain_assignment


def start_tap(config: dict, tmp_path: Path, *, stdout=subprocess.PIPE) -> subprocess.Popen:
    config_file = tmp_path / "config.json"
    config_file.write_text(json.dumps(config))
    command = [str(Path(sys.executable).with_name("tap-cube")), "--config", str(config_file)]
    return subprocess.Popen(
        command, stdout=stdout, stderr=subprocess.PIPE, text=True, env=dict(os.environ)
    )


class Output:
    """Collects a running tap's stdout and stderr in threads, so no line is lost."""

    def __init__(self, process: subprocess.Popen) -> None:
        assert process.stdout is not None
        assert process.stderr is not None
        self.stdout, stderr = process.stdout, process.stderr
        self.process = process
        self.lines: list[str] = []
        self.stderr: list[str] = []
        self._records = 0
        self._wanted = 0
        self._reached = threading.Event()
        self._threads = [
            threading.Thread(target=self._read_stdout),
            threading.Thread(target=lambda: self.stderr.append(stderr.read())),
        ]
        for thread in self._threads:
            thread.start()

    def _read_stdout(self) -> None:
        for line in self.stdout:
            self.lines.append(line)
            if json.loads(line)["type"] == "RECORD":
                self._records += 1
                if self._wanted and self._records >= self._wanted:
                    self._reached.set()
        self._reached.set()

    def wait_for_records(self, wanted: int) -> None:
        self._wanted = wanted
        if self._records >= wanted:
            return
        assert self._reached.wait(60)

    def finish(self) -> str:
        # A run that ignored the stop would go on for minutes: this bound is the check.
        self.process.wait(timeout=30)
        for thread in self._threads:
            thread.join()
        return self.stderr[0]


def record_count(lines: list[str]) -> int:
    return sum(1 for line in lines if json.loads(line)["type"] == "RECORD")


@pytest.mark.parametrize(
    ("signum", "status"),
    [(signal.SIGTERM, 143), (signal.SIGINT, 130), (signal.SIGHUP, 129)],
)
def test_signal_mid_paging(simulator, tmp_path, signum, status):
    sim = simulator([plain_assignment(7, 500 * 40)], latency=0.05)
    process = start_tap(config_for(sim, [7]), tmp_path)
    output = Output(process)
    output.wait_for_records(600)
    process.send_signal(signum)
    err = output.finish()
    lines = output.lines
    assert process.returncode == status, err
    last = err.strip().splitlines()[-1]
    name = signal.Signals(signum).name
    records = record_count(lines)
    assert last == f"tap-cube: stopped by {name} after {records} records; this run is incomplete"
    assert "Traceback" not in err
    assert "Gracefully shutting down" not in err
    assert record_count(lines) < 500 * 40


def test_signal_during_discovery(simulator, tmp_path):
    sim = simulator([plain_assignment(7, 100)], latency=3.0)
    process = start_tap(config_for(sim, [7]), tmp_path)
    output = Output(process)
    deadline = time.monotonic() + 30
    # Wait until the first page of customers is being sampled for the schema.
    while not any(r.path.endswith("/customers/") for r in sim.requests):
        assert time.monotonic() < deadline
        time.sleep(0.05)
    process.send_signal(signal.SIGTERM)
    err = output.finish()
    assert process.returncode == 143, err
    assert err.strip().splitlines()[-1] == (
        "tap-cube: stopped by SIGTERM after 0 records; this run is incomplete"
    )
    assert "Traceback" not in err


def test_signal_during_a_retry_wait_ends_promptly(simulator, tmp_path):
    sim = simulator([plain_assignment(7, 500 * 8)])
    sim.fail_next("/customers/?page=3", 429, headers={"Retry-After": "120"}, times=3)
    process = start_tap(config_for(sim, [7], max_retry_wait=600), tmp_path)
    output = Output(process)
    output.wait_for_records(500)
    time.sleep(0.5)  # now waiting out the Retry-After
    process.send_signal(signal.SIGTERM)
    err = output.finish()  # within its 30 s, so the 120 s wait was cut short
    assert process.returncode == 143, err
    assert "stopped by SIGTERM" in err.strip().splitlines()[-1]
    assert "Traceback" not in err


def test_closed_output_ends_promptly_with_one_line(simulator, tmp_path):
    sim = simulator([plain_assignment(7, 500 * 40)], latency=0.02)
    process = start_tap(config_for(sim, [7]), tmp_path)
    assert process.stdout is not None
    process.stdout.readline()
    process.stdout.close()  # like `tap-cube ... | head -1`
    assert process.stderr is not None
    stderr = []
    errors = process.stderr
    reader = threading.Thread(target=lambda: stderr.append(errors.read()))
    reader.start()
    process.wait(timeout=30)
    reader.join()
    err = stderr[0]
    assert process.returncode == 1, err
    last = err.strip().splitlines()[-1]
    assert last.startswith("tap-cube: error: the output was closed before the run ended")
    assert "Traceback" not in err
    assert "BrokenPipeError" not in err


HELD_IMPORT = """
import sys, time

class HoldSdkImport:
    # Holds the first import of the SDK, where the slow start of a real process is spent.
    @staticmethod
    def find_spec(name, path=None, target=None):
        if name == "singer_sdk":
            sys.meta_path.remove(HoldSdkImport)
            print("importing the SDK", file=sys.stderr, flush=True)
            time.sleep(60)
        return None

sys.meta_path.insert(0, HoldSdkImport)
sys.argv = ["tap-cube", *sys.argv[1:]]
from tap_cube.cli import main
main()
"""


@pytest.mark.parametrize(("signum", "status"), [(signal.SIGTERM, 143), (signal.SIGHUP, 129)])
def test_signal_while_the_command_starts(tmp_path, signum, status):
    """A signal before the tap exists (the SDK still importing) ends with the same line."""
    config_file = tmp_path / "config.json"
    config_file.write_text(json.dumps({"api_url": "https://acme.headshed.com/api/v1"}))
    process = subprocess.Popen(
        [sys.executable, "-c", HELD_IMPORT, "--config", str(config_file)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    assert process.stderr is not None
    assert process.stderr.readline().strip() == "importing the SDK"
    process.send_signal(signum)
    out, err = process.communicate(timeout=60)
    assert process.returncode == status, err
    name = signal.Signals(signum).name
    assert err.strip().splitlines()[-1] == (
        f"tap-cube: stopped by {name} after 0 records; this run is incomplete"
    )
    assert "Traceback" not in err
    assert out == ""
