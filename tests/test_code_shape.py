"""The shape the code keeps: no function of the tap so long that a reader loses its thread,
and no day read by the machine's clock where Cube's is meant."""

from __future__ import annotations

import ast
import typing as t
from pathlib import Path

PACKAGE = Path(__file__).resolve().parent.parent / "tap_cube"
MAX_FUNCTION_LINES = 60


def function_lengths() -> dict[str, int]:
    lengths: dict[str, int] = {}
    for path in sorted(PACKAGE.rglob("*.py")):
        tree = ast.parse(path.read_text(encoding="utf-8"))
        for node in ast.walk(tree):
            if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
                name = f"{path.relative_to(PACKAGE.parent)}:{node.lineno} {node.name}"
                lengths[name] = end_line(node) - node.lineno + 1
    return lengths


def end_line(node: ast.AST) -> int:
    end = getattr(node, "end_lineno", None)
    assert end is not None
    return int(end)


def test_no_function_of_the_tap_is_longer_than_sixty_lines():
    lengths = function_lengths()
    assert len(lengths) > 300  # the scan finds the tap's functions
    too_long = {name: lines for name, lines in lengths.items() if lines > MAX_FUNCTION_LINES}
    assert not too_long, too_long


#: Where the machine's own date is the point: the one test that runs in a zone on
#: another day than the machine's.
MACHINE_DATE_ON_PURPOSE = {"tests/test_more_streams.py zone_on_another_day"}


def machine_date_reads() -> set[str]:
    """Each function of the tap, the simulator and the tests that reads the machine's
    date or local time: `date.today()`, or `datetime.now()` without a zone."""
    found = set()
    root = PACKAGE.parent
    for folder in ("tap_cube", "cube_simulator", "tests"):
        for path in sorted((root / folder).rglob("*.py")):
            tree = ast.parse(path.read_text(encoding="utf-8"))
            for function in [tree, *ast.walk(tree)]:
                if not isinstance(function, ast.Module) and not _is_function(function):
                    continue
                inner = [n for n in ast.iter_child_nodes(function) if not _is_function(n)]
                if any(_reads_machine_date(n) for top in inner for n in _walk_outside(top)):
                    name = getattr(function, "name", "<module>")
                    found.add(f"{path.relative_to(root)} {name}")
    return found


def _is_function(node: ast.AST) -> bool:
    return isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef)


def _walk_outside(node: ast.AST) -> t.Iterator[ast.AST]:
    """`node` and what it holds, without the functions defined inside it."""
    yield node
    for child in ast.iter_child_nodes(node):
        if not _is_function(child):
            yield from _walk_outside(child)


def _named(node: ast.AST, name: str) -> bool:
    return (isinstance(node, ast.Name) and node.id == name) or (
        isinstance(node, ast.Attribute) and node.attr == name
    )


def _reads_machine_date(node: ast.AST) -> bool:
    if not isinstance(node, ast.Call) or not isinstance(node.func, ast.Attribute):
        return False
    func = node.func
    if func.attr == "today":
        return _named(func.value, "date")
    return (
        func.attr == "now" and _named(func.value, "datetime") and not (node.args or node.keywords)
    )


def test_days_are_read_in_cubes_zone_not_the_machines():
    # A day by the machine's clock is not Cube's for an hour or two every night (the
    # tap's windows are in the timezone setting's zone); a test using it fails then.
    reads = machine_date_reads()
    assert reads >= MACHINE_DATE_ON_PURPOSE  # the scan finds what it looks for
    assert reads == MACHINE_DATE_ON_PURPOSE
