"""The code's own checks, run by the test command (so by CI): lint, types, layers, function length.

ruff, mypy and import-linter come with the ``dev`` extra; their settings live in pyproject.toml. Each check
is a subprocess on ``vconv/`` and fails with the tool's own report.
"""

from __future__ import annotations

import ast
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "vconv"
MAX_FUNCTION_LINES = 60


def _run(*command: str) -> None:
    tool = Path(sys.executable).parent / command[0]
    if not tool.exists() and shutil.which(command[0]) is None:
        pytest.fail(f"{command[0]} is not installed: pip install -e '.[dev]'")
    result = subprocess.run([str(tool) if tool.exists() else command[0], *command[1:]], cwd=ROOT,
                            capture_output=True, text=True, timeout=900)
    assert result.returncode == 0, f"{' '.join(command)} failed:\n{result.stdout[-6000:]}\n{result.stderr[-2000:]}"


def test_ruff_is_clean():
    _run("ruff", "check", "vconv")


@pytest.mark.slow
def test_mypy_is_clean():
    _run("mypy", "vconv")


def test_the_layers_hold_and_no_module_cycles():
    """pyproject's [tool.importlinter]: no import from a higher layer, no cycle between sibling modules."""
    _run("lint-imports")


def test_files_are_written_through_the_atomic_helpers():
    """Nothing is lost: vconv writes files via vconv.fileio (temporary name, then rename), never in place."""
    # writing the temporary file that atomic_path hands out (named tmp) is the atomic way
    write = re.compile(r"([\w().]+)\.write_(?:text|bytes)\(")
    in_place = [f"{path.relative_to(ROOT)}:{number}" for path in sorted(PACKAGE.rglob("*.py")) if path.name != "fileio.py"
                for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1)
                for target in write.findall(line) if "tmp" not in target]
    assert not in_place, "write through vconv.fileio.write_text_atomic / atomic_path instead:\n" + "\n".join(in_place)


def test_no_function_in_vconv_is_longer_than_60_lines():
    long = []
    for path in sorted(PACKAGE.rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                lines = node.end_lineno - node.lineno + 1
                if lines > MAX_FUNCTION_LINES:
                    long.append(f"{path.relative_to(ROOT)}:{node.lineno} {node.name} ({lines} lines)")
    assert not long, "functions over 60 lines (split them by meaning):\n" + "\n".join(long)


def test_no_module_in_vconv_is_longer_than_400_lines_and_few_sit_flat():
    """House III's layout: a module that owns one thing stays short; the package's top holds only the entry points and
    the helpers every layer shares (__init__, __main__, _version, errors, fileio, skeleton)."""
    long = {str(p.relative_to(ROOT)): n for p in PACKAGE.rglob("*.py") if (n := len(p.read_text().splitlines())) > 400}
    assert not long, long
    flat = sorted(p.name for p in PACKAGE.glob("*.py"))
    assert len(flat) <= 6, flat
