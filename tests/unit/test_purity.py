"""The purity boundary: the pure modules import no Kafka, Faust, Redis or wall clock.

A package or module is pure when its docstring starts with ``PURE:``; this test reads
those markers from the tree, so a new module under a pure package is checked at once.
"""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

IO_MODULES = ["confluent_kafka", "faust", "aiokafka", "redis", "mode"]
ROOT = Path(__file__).resolve().parents[2] / "streammon"
MARKER = "PURE:"


def _is_marked(path: Path) -> bool:
    doc = ast.get_docstring(ast.parse(path.read_text()))
    return doc is not None and doc.startswith(MARKER)


def _module_name(path: Path) -> str:
    parts = path.relative_to(ROOT.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def pure_files() -> list[Path]:
    """Every module of a package marked pure, and every module marked pure itself."""
    files: set[Path] = set()
    for path in ROOT.rglob("*.py"):
        if not _is_marked(path):
            continue
        files |= set(path.parent.rglob("*.py")) if path.name == "__init__.py" else {path}
    return sorted(files)


PURE = sorted({_module_name(p) for p in pure_files()})


def test_the_flow_packages_are_marked_pure() -> None:
    """join/, decide/, stats/, control/commands and events carry the PURE marker."""
    expected = {"streammon.join", "streammon.decide", "streammon.stats",
                "streammon.control.commands", "streammon.events"}
    assert expected <= set(PURE)
    assert "streammon.control.actuator" not in PURE


def test_pure_modules_load_no_io_library() -> None:
    """Importing every pure module in a fresh interpreter loads no Kafka, Faust or Redis."""
    code = (f"import sys\nfor m in {PURE!r}: __import__(m)\n"
            f"print(sorted(m for m in sys.modules if m.split('.')[0] in {IO_MODULES!r}))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


@pytest.mark.parametrize("path", pure_files(), ids=_module_name)
def test_pure_module_reads_no_clock(path: Path) -> None:
    """No pure module calls time.time, time.monotonic or datetime.now: time is a parameter."""
    tree = ast.parse(path.read_text())
    calls = {f"{n.value.id}.{n.attr}" for n in ast.walk(tree)
             if isinstance(n, ast.Attribute) and isinstance(n.value, ast.Name)}
    assert not calls & {"time.time", "time.monotonic", "datetime.now", "datetime.utcnow"}
