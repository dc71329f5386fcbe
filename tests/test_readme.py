"""The README's settings table is the one `tap-cube --about --format=markdown` prints."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

README = Path(__file__).parent.parent / "README.md"
START, END = "<!-- settings:start -->", "<!-- settings:end -->"


def about_settings_table() -> str:
    about = subprocess.run(
        [str(Path(sys.executable).with_name("tap-cube")), "--about", "--format=markdown"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    match = re.search(r"## Settings\n\n(.*?)\n\n", about, re.DOTALL)
    assert match, about
    return match.group(1).strip()


def test_readme_settings_table_matches_about():
    table = about_settings_table()
    text = README.read_text(encoding="utf-8")
    before, rest = text.split(START, 1)
    current, after = rest.split(END, 1)
    if os.environ.get("UPDATE_README") == "1":
        README.write_text(f"{before}{START}\n{table}\n{END}{after}", encoding="utf-8")
        current = f"\n{table}\n"
    assert current.strip() == table, (
        "README settings table is out of date; regenerate it with "
        "UPDATE_README=1 uv run pytest tests/test_readme.py"
    )
