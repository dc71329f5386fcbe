"""The shape the tap's code keeps: no function so long that a reader loses its thread."""

from __future__ import annotations

import ast
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
