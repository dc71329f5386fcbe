"""meltano.yml's `daily` job, and the schedule for it that a deployment uncomments."""

from __future__ import annotations

import json
import os
import re
import subprocess

from tests.meltano_support import FOREIGN_PREFIXES, MELTANO, REPO

COMMENTED_SCHEDULE = re.compile(r"^# (schedules:\n(?:#   ?.*\n|# - .*\n)+)", re.MULTILINE)


def meltano_json(project: str, *args: str, sys_dir: str) -> dict:
    env = {k: v for k, v in os.environ.items() if not k.startswith(FOREIGN_PREFIXES)}
    env.update(MELTANO_PROJECT_ROOT=project, MELTANO_SYS_DIR_ROOT=sys_dir)
    done = subprocess.run(
        [str(MELTANO), *args, "--format=json"],
        capture_output=True,
        text=True,
        env=env,
        cwd=project,
        timeout=120,
        check=True,
    )
    found: dict = json.loads(done.stdout)
    return found


def test_daily_job_runs_the_tap_into_postgres(tmp_path):
    jobs = meltano_json(str(REPO), "job", "list", sys_dir=str(tmp_path))["jobs"]
    assert jobs == [{"job_name": "daily", "tasks": ["tap-cube target-postgres"]}]


def test_commented_schedule_runs_the_daily_job_once_uncommented(tmp_path):
    text = (REPO / "meltano.yml").read_text(encoding="utf-8")
    match = COMMENTED_SCHEDULE.search(text)
    assert match, "meltano.yml has no commented `# schedules:` block"
    block = re.sub(r"^# ?", "", match.group(0), flags=re.MULTILINE)
    project = tmp_path / "project"
    project.mkdir()
    (project / "meltano.yml").write_text(text.replace(match.group(0), block), encoding="utf-8")
    schedules = meltano_json(str(project), "schedule", "list", sys_dir=str(tmp_path / "sys"))
    [daily] = schedules["schedules"]["job"]
    assert (daily["interval"], daily["job"]["name"]) == ("@daily", "daily")
