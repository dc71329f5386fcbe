"""The Cube simulator in its own process (`python -m cube_simulator`), one per run.

A fresh simulator for every run, so that no run finds pages cached by the one before. It
serves ASSIGNMENT_IDS with the same number of customers each, with `--next-style same`
(next links point at the simulator itself), the only style under which the naive loop
works: the real service's links may name an internal host and `http://`, which tap-cube
never follows (it takes only their query). end_to_end.py serves its data from a simulator in its
own process instead (see lib/pipelines.py), so that its /proc sampling finds every child
process to be the pipeline's.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import TYPE_CHECKING

from lib.common import ASSIGNMENT_IDS, ROOT, TOKEN, child_env

if TYPE_CHECKING:
    from types import TracebackType

PAGE_SIZE = 500


class SimulatorProcess:
    """The Cube simulator in its own process, serving `per_assignment` customers each."""

    def __init__(
        self,
        per_assignment: int,
        workdir: Path,
        *,
        latency: float = 0.0,
        id_style: str | None = None,
    ) -> None:
        self._per_assignment = per_assignment
        self._latency = latency
        self._id_style = id_style
        self._workdir = workdir
        self._proc: subprocess.Popen[bytes] | None = None
        self.url = ""

    def argv(self, ready: Path) -> list[str]:
        argv = [
            sys.executable,
            "-m",
            "cube_simulator",
            "--port",
            "0",
            "--latency",
            str(self._latency),
            "--page-size",
            str(PAGE_SIZE),
            "--next-style",
            "same",
            "--token",
            TOKEN,
            "--ready-file",
            str(ready),
        ]
        if self._id_style is not None:
            argv += ["--id-style", self._id_style]
        for assignment_id in ASSIGNMENT_IDS:
            argv += ["--assignment", f"{assignment_id}={self._per_assignment}"]
        return argv

    def __enter__(self) -> SimulatorProcess:
        # A fresh name, which the simulator creates once it listens.
        fd, name = tempfile.mkstemp(dir=self._workdir, prefix="simulator-", suffix=".url")
        os.close(fd)
        ready = Path(name)
        ready.unlink()
        log = (self._workdir / "simulator.log").open("ab")
        with log:
            self._proc = subprocess.Popen(  # noqa: S603  # argv built here
                self.argv(ready),
                cwd=ROOT,
                env=child_env(),
                stdin=subprocess.DEVNULL,
                stdout=subprocess.DEVNULL,
                stderr=log,
            )
        deadline = time.monotonic() + 30
        while not ready.exists():
            if self._proc.poll() is not None:
                msg = f"the simulator exited with {self._proc.returncode}; see {log.name}"
                raise RuntimeError(msg)
            if time.monotonic() > deadline:
                self._stop()
                msg = "the simulator did not start within 30 s"
                raise RuntimeError(msg)
            time.sleep(0.02)
        self.url = ready.read_text().strip()
        ready.unlink()
        return self

    @property
    def pid(self) -> int | None:
        return None if self._proc is None else self._proc.pid

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self._stop()

    def _stop(self) -> None:
        if self._proc is None:
            return
        self._proc.send_signal(signal.SIGTERM)
        try:
            self._proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self._proc.kill()
            self._proc.wait()
        self._proc = None
